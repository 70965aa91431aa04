"""Shared runner of the modern training validations (long context, FP8, dense weak scaling).

A suite is a list of ``Case``: a published number, the scenario that reproduces its
configuration as published (assumptions where the source is silent are stated in the
case's note), and the metric compared. Every case becomes one row with the keys
``suite, name, metric, predicted, published, error_pct, low, high, status, note`` (a
``validate all`` dashboard collects these dicts); skipped cases keep their reason.

Conventions shared by all suites (docs/long_context.md, docs/fp8.md):
* model TFLOP/s per GPU count ``workloads.model.model_flops`` (6 x GEMM parameters per
  token plus 12 s h per layer and token, full attention): exactly NeMo's
  ``flops_formulas.llama2/llama3`` and Megatron-LM's ``num_floating_point_operations``;
* the memory check is off: the rows compare time; the predicted peak is reported;
* published configurations run with Megatron-Core's defaults where NVIDIA's recipes use
  them: distributed optimizer (zero 1), sequence parallelism and TP overlap when tp > 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from hw_models import catalog
from hw_models.errors import ClusterSimError

REF = resources.files("calibration").joinpath("reference", "modern")
METRICS = ("tokens_per_s_per_gpu", "tflops_per_gpu", "step_time_s")


@dataclass
class Case:
    suite: str
    name: str
    metric: str                       # one of METRICS
    published: float | None
    scenario: dict[str, Any] | None = None
    note: str = ""
    skip: str = ""                    # reason the case is not simulated
    pair: str = ""                    # BF16/FP8 pair key (fp8 suite)
    extra: dict[str, Any] = field(default_factory=dict)


def read(name: str) -> pd.DataFrame:
    return pd.read_csv(REF.joinpath(name), comment="#")


def num(value) -> float | None:
    """A published cell as a number: None for empty, '-', 'n/a' or text."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip().split(" ")[0]
    try:
        return float(text)
    except ValueError:
        return None


def training(name: str, system: str, gpus: int, model: str | dict, seq: int, gbs: int,
             parallel: dict[str, Any], precision: str = "bf16", recipe: str | None = None,
             micro_batch: int = 1, recompute: str = "none", fused_amax: bool = False,
             **workload) -> dict[str, Any]:
    """A training scenario of ``gpus`` GPUs on ``system`` with Megatron-Core defaults."""
    per_node = catalog.system(system).gpus_per_node
    par = {"zero": 1, **parallel}
    if par.get("tp", 1) > 1:
        par.setdefault("sequence_parallel", True)
        par.setdefault("tp_comm_overlap", "ring")
    if par.get("vpp", 1) > 1:
        par.setdefault("schedule", "interleaved")
    w = {"kind": "training", "model": model, "seq_len": seq, "global_batch": gbs,
         "micro_batch": micro_batch, "precision": precision, "parallel": par,
         "recompute": recompute, **workload}
    if precision == "fp8":
        w["fp8"] = {"recipe": recipe or "delayed", **({"fused_amax": True} if fused_amax else {})}
    return {"name": name, "cluster": {"system": system, "nodes": max(1, gpus // per_node)},
            "workload": w, "sim": {"fidelity": "analytical", "check_memory": False}}


_CACHE: dict[str, Any] = {}


def _simulate(sc: dict[str, Any], band: bool):
    from sim.scenario import parse
    from sim.simulate import simulate
    key = json.dumps(sc, sort_keys=True) + str(band)
    if key not in _CACHE:
        _CACHE[key] = simulate(parse(sc, sc["name"]), band=band)
    return _CACHE[key]


def _metric(res, metric: str, t: float) -> float:
    if metric == "step_time_s":
        return t
    if metric == "tokens_per_s_per_gpu":
        return res.tokens_per_s * res.iteration_time_s / t / res.world_size
    return res.tflops_per_gpu * res.iteration_time_s / t


def run_case(case: Case, band: bool = False) -> dict[str, Any]:
    row = {"suite": case.suite, "name": case.name, "metric": case.metric,
           "predicted": None, "published": case.published, "error_pct": None,
           "low": None, "high": None, "status": "skipped", "note": case.skip or case.note,
           "memory_gib": None, **case.extra}
    if case.skip or case.scenario is None or case.published is None:
        return row
    try:
        res = _simulate(case.scenario, band)
    except ClusterSimError as exc:
        return row | {"status": "error", "note": str(exc)}
    pred = _metric(res, case.metric, res.iteration_time_s)
    row |= {"predicted": round(pred, 3), "status": "ok", "memory_gib": round(res.memory_peak_gib, 1),
            "error_pct": round((pred / case.published - 1) * 100, 1)}
    if res.band:
        lo, hi = res.band["iteration_time_s"]
        ends = sorted((_metric(res, case.metric, lo), _metric(res, case.metric, hi)))
        row |= {"low": round(ends[0], 3), "high": round(ends[1], 3)}
    return row


def run(cases: list[Case], band: bool = False) -> list[dict[str, Any]]:
    return [run_case(c, band) for c in cases]


def summary(rows: list[dict[str, Any]], where=None) -> dict[str, Any]:
    ok = [r for r in rows if r["status"] == "ok" and (where is None or where(r))]
    err = np.abs([r["error_pct"] for r in ok]) if ok else np.array([])
    return {"rows": len(rows), "compared": len(ok),
            "skipped": sum(r["status"] == "skipped" for r in rows),
            "errors": sum(r["status"] == "error" for r in rows),
            "median_abs_error_pct": float(np.median(err)) if ok else None,
            "max_abs_error_pct": float(err.max()) if ok else None,
            "rows_over_10pct": int((err > 10).sum()) if ok else 0}


def table(rows: list[dict[str, Any]], columns: tuple[str, ...] = (
        "name", "metric", "predicted", "published", "error_pct", "status", "note")) -> str:
    df = pd.DataFrame(rows)
    cols = [c for c in columns if c in df.columns]
    df = df[cols].copy()
    if "note" in df:
        df["note"] = df["note"].fillna("").str.slice(0, 70)
    with pd.option_context("display.max_rows", None, "display.width", 250):
        return df.fillna("").to_string(index=False)


def dashboard(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The compared rows in calibration/dashboard.py's shape (``validate all``)."""
    return [{"suite": r["suite"], "name": r["name"], "predicted": r["predicted"],
             "published": r["published"], "error_pct": r["error_pct"], "unit": r["metric"],
             "kind": "time" if r["metric"] == "step_time_s" else "rate",
             "low": r["low"], "high": r["high"]}
            for r in rows if r["status"] == "ok"]
