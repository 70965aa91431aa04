"""Model-only replay of real GPU traces: the step predicted by the compute and collective
models from the trace's graph and shapes (``clustersim replay TRACE --durations model``),
against the step the trace measured.

Traces: the real GPU traces of HolisticTraceAnalysis' test data (../shared/traces, copied
into tests/data/traces; MIT License, Copyright (c) Meta Platforms, Inc. and affiliates)
and the project's H100 GPT trace (tests/data/traces/README.md). For each: the device and
the catalog system it is priced on, the share of the recorded device time the models
could price (kernels whose launching ``aten::`` op recorded its shapes, collectives with
their message size), whether the step is paced by the device, and the model's error. The
system is the one ``clustersim replay`` picks from the recorded GPU (V100 -> dgx-1-v100,
an MI250 GCD -> mi250-8), except the HTA A100 traces, whose A100-PG509-200 parts are the
40 GB ones of azure-nd-a100-v4.

A step error only tests the models where the models priced most of the device time and
the device paces the step; other traces are listed with the reason and left out of the
dashboard's rows (their "error" would be the replay of recorded times, not the models).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from hw_models import catalog
from hw_models.errors import ClusterSimError
from hw_models.profile import calibration_status, load_builtin
from sim.replay import model_coverage, replay
from sim.whatif import Recoster, WhatIf, source_system_for
from workloads.traces.formats import load_trace

REPO = Path(str(resources.files("calibration"))).parent
SHARED = REPO.parent.parent / "shared" / "traces"      # ../shared/traces of the checkout
DATA = REPO / "tests" / "data" / "traces"
# Systems the traces ran on where it is known better than the catalog's default for the
# GPU: the HTA A100 traces ran on A100 40GB parts (azure-nd-a100-v4 carries that part).
SYSTEMS = {"A100": "azure-nd-a100-v4"}
MIN_PRICED, MIN_BUSY = 0.5, 0.5


@dataclass(frozen=True)
class TraceCase:
    name: str
    file: str
    et: str | None = None
    system: str | None = None      # where the device name does not say (an ET-linked trace)


CASES = (TraceCase("a100_2rank_rank0_nccl", "a100_2rank_rank0_nccl.json.gz"),
         TraceCase("a100_alexnet_2streams", "a100_alexnet_2streams.json.gz"),
         TraceCase("a100_simple_add (+ET)", "a100_simple_add_kineto.json.gz",
                   "a100_simple_add_et.json.gz", "azure-nd-a100-v4"),
         TraceCase("v100_1rank", "v100_1rank.json.gz"),
         TraceCase("v100_2rank_rank1", "v100_2rank_rank1.json.gz"),
         TraceCase("mi250_minitoy_train", "mi250_minitoy_train.json.gz"),
         TraceCase("h100_gpt_1p3b_s4k", "h100_gpt_1p3b_s4k.json.gz"))


def _path(file: str) -> Path | None:
    for folder in (DATA, SHARED):
        if (folder / file).is_file():
            return folder / file
    return None


def _system(trace) -> str | None:
    """The catalog system of the trace's GPU (as ``clustersim replay`` picks it), or None."""
    device = next(iter(trace.devices.values()), "")
    known = next((s for key, s in SYSTEMS.items() if key in device), None)
    try:
        return known or source_system_for(trace.devices, trace.device_memory_gb,
                                          units=trace.device_units)[0]
    except ClusterSimError:
        return None


def evaluate(case: TraceCase) -> dict:
    path = _path(case.file)
    if path is None:
        return {"trace": case.name, "reason": "file not found"}
    trace = load_trace(path, _path(case.et) if case.et else None)
    device = next(iter(trace.devices.values()), "")
    system = case.system or _system(trace)
    row = {"trace": case.name, "device": device, "system": system}
    if system is None:
        return row | {"reason": "device not in the catalog"}
    spec = catalog.system(system)
    row["calibration"] = calibration_status(load_builtin(spec.default_profile),
                                            spec.gpu)["status"]
    res = replay(trace, WhatIf(source_system=system), durations="model")
    cov = model_coverage(trace, res.measured_iteration_s,
                         Recoster(WhatIf(source_system=system), trace.graph.world_size))
    row |= {"measured_ms": _ms(res.measured_iteration_s), "model_ms": _ms(res.replayed.iteration_s),
            "error_pct": None if res.replay_error is None else round(100 * res.replay_error, 1),
            "priced_share": round(cov["priced_share"], 3),
            "device_busy": round(res.device_busy_fraction, 3),
            "priced_ops_recorded_ms": _ms(cov["priced_recorded_s_per_iteration"]),
            "priced_ops_model_ms": _ms(cov["priced_model_s_per_iteration"]),
            "top_unpriced": "; ".join(f"{k['name'][:40]} {100 * (k['share_of_step'] or 0):.0f}%"
                                      for k in cov["unpriced_kernels"][:2])}
    reasons = []
    if cov["priced_share"] < MIN_PRICED:
        reasons.append(f"models priced {cov['priced_share']:.0%} of device time")
    if res.device_busy_fraction < MIN_BUSY:
        reasons.append(f"host-paced (device busy {res.device_busy_fraction:.0%})")
    return row | {"reason": "; ".join(reasons)}


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1e3, 3)


def run() -> pd.DataFrame:
    return pd.DataFrame([evaluate(c) for c in CASES])


SUITE = "replay"


def dashboard_rows() -> list[dict]:
    """Rows for ``clustersim validate all``: the traces whose step tests the models."""
    df = run()
    ok = df[(df.reason == "") & df.error_pct.notna()] if "error_pct" in df else df.iloc[0:0]
    return [{"name": f"{r.trace} step", "predicted": r.model_ms, "published": r.measured_ms,
             "unit": "ms", "kind": "time"} for r in ok.itertuples()]


if __name__ == "__main__":
    print(run().to_string(index=False))
