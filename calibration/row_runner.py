"""What the Megatron-Bridge training-row validations share (calibration/validate_moe.py,
validate_hybrid.py, validate_mbperf.py): the systems of the GPU labels, the FP8 recipe of a
precision label, the first reason a row is skipped, the checks every recipe-driven row makes,
and the loop that predicts each row or says why it is skipped.

The metric is tokens/s per GPU; the error is predicted / published - 1, in percent.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from hw_models import catalog

REF = resources.files("calibration").joinpath("reference", "modern")

# GPU label of a published row -> (catalog system, GPUs per node).
SYSTEMS = {"H100": ("dgx-h100", 8), "B200": ("dgx-b200", 8), "GB200": ("gb200-nvl72", 4),
           "B300": ("dgx-b300", 8), "GB300": ("gb300-nvl72", 4), "H800": ("dgx-h800", 8)}
# Precision label -> FP8 recipe (workloads/fp8.py): Megatron-Bridge's H100 "FP8" is current
# scaling (the Nemotron recipes' ``fp8_cs``), MXFP8 block scaling, FP8-BLOCKWISE DeepSeek-style
# 1x128 / 128x128 block scaling (Megatron-LM's fp8_recipe blockwise), NVFP4.
FP8_RECIPE = {"FP8": "tensorwise", "FP8-CS": "tensorwise", "MXFP8": "mxfp8", "FP8-MX": "mxfp8",
              "FP8-BLOCKWISE": "blockwise", "NVFP4": "nvfp4"}


def _num(x) -> float | None:
    """The leading number of a CSV cell; None where it has none."""
    try:
        v = float(str(x).split()[0])
    except (ValueError, IndexError):
        return None
    return None if np.isnan(v) else v


def label(row) -> str:
    """The precision label of a row (its first word, upper case)."""
    return str(row.precision).split()[0].upper()


def cluster_system(gpu: str) -> str | dict:
    """The catalog system of a GPU label. GB200 / GB300 jobs are placed in NVLink segments of
    16 trays (64 GPUs) of an NVL72 rack, so a 64-GPU NVLink domain: NVIDIA's GB200 launch
    scripts ask SLURM for ``--segment`` ("makes sure that all nodes are in the same NVLink
    domain", TensorRT-LLM's GB200 disaggregated-serving examples; ``--segment 16`` with 4 GPUs
    per node in NeMo-RL's GB200 benchmarks)."""
    name = SYSTEMS[gpu][0]
    if gpu not in ("GB200", "GB300"):
        return name
    spec = catalog.system(name).model_dump(exclude_none=True)
    spec["scale_up"]["domain_gpus"] = 64
    spec["source"] = spec["source"] + "; jobs in 16-tray (64-GPU) NVLink segments"
    return spec


def training_scenario(row, *, mtp: int, micro_batch: int, fp8: dict, recompute: dict,
                      parallel: dict, moe: dict, cuda_graphs, fidelity: str, **extra) -> dict:
    """The training scenario of a recipe-driven row: the row's model preset (inline with the
    recipe's ``mtp`` MTP passes where they differ from the preset's), its system and nodes, its
    sequence and batch, 16-bit or FP8 (``fp8`` where the label is not BF16), the recipe's
    ``recompute`` keys, ``parallel``, ``moe`` and CUDA-graph scopes (those the simulator knows;
    workloads/host_launch.py SCOPES), then any ``extra`` workload keys."""
    from workloads.host_launch import SCOPES
    from workloads.model import presets
    gpu, lab = str(row.gpu_type).split()[0], label(row)
    model = presets()[row.arch_id]
    graphs = [s for s in cuda_graphs if s in SCOPES]
    return {"name": f"{row.source_id}-{row.arch_id}-{gpu}-{row.num_gpus}-{lab}",
            "cluster": {"system": cluster_system(gpu), "nodes": int(row.num_gpus) // SYSTEMS[gpu][1]},
            "workload": {"kind": "training",
                         "model": row.arch_id if model.mtp_layers == mtp else
                         model.model_dump(exclude_none=True) | {"mtp_layers": mtp},
                         "seq_len": int(row.seq_len), "global_batch": int(row.global_batch_seqs),
                         "micro_batch": micro_batch,
                         "precision": "bf16" if lab == "BF16" else "fp8",
                         **({} if lab == "BF16" else {"fp8": fp8}),
                         **recompute, "parallel": parallel, "moe": moe,
                         "cuda_graphs": graphs or "none", **extra},
            "sim": {"fidelity": fidelity, "check_memory": False}}


def read_rows(name: str) -> pd.DataFrame:
    """A published-row CSV of calibration/reference/modern, every cell as text."""
    return pd.read_csv(REF.joinpath(name), comment="#", dtype=str)


def first_reason(checks) -> str | None:
    """The reason of the first check that fails; None where none does. A check is
    ``(bad, why)``: ``bad`` a bool or a callable returning one (called in order, so a check
    may rely on the ones before it passing), ``why`` a string or a callable building it
    (built only for the failing check)."""
    for bad, why in checks:
        if bad() if callable(bad) else bad:
            return why() if callable(why) else why
    return None


def preset_check(row, zoo, note: str = "") -> tuple:
    """A row's model must have a preset in the model zoo ``zoo``."""
    return (lambda: row.arch_id not in zoo, f"no preset {row.arch_id} in the model zoo{note}")


def system_check(gpu: str) -> tuple:
    """A row's GPU must have a system in the catalog."""
    return (lambda: gpu not in SYSTEMS or SYSTEMS[gpu][0] not in catalog.systems(),
            f"no {gpu} system in the catalog")


def precision_check(row) -> tuple:
    """A row's precision label must be BF16 or have an FP8 recipe (FP8_RECIPE)."""
    return (lambda: label(row) not in FP8_RECIPE and label(row) != "BF16",
            f"precision {row.precision} not mapped")


def recipe_tail_checks(row, got, unmodelled) -> list:
    """The last checks of a recipe-driven row: its recipe ``got`` sets nothing the simulator
    does not model (``unmodelled(got)`` lists it), and the row publishes a throughput."""
    return [(lambda: bool(unmodelled(got)),
             lambda: "recipe sets what the simulator does not model: " + "; ".join(unmodelled(got))),
            (lambda: _num(row.throughput_tokens_per_s_per_gpu) is None, "no throughput published")]


def _published(row) -> float:
    return _num(row.throughput_tokens_per_s_per_gpu) or float("nan")


def run_rows(frame: pd.DataFrame, skip, scenario, predict, fidelity: str = "analytical",
             plan=None, published=_published) -> pd.DataFrame:
    """Each row of ``frame``: predicted tokens/s per GPU, or why skipped. ``skip(row, zoo)``
    says why a row is not predicted (None where it is), ``scenario(row, fidelity)`` builds its
    scenario and ``predict(scenario)`` returns (tokens/s per GPU, info); ``plan(row)`` is the
    plan column's text, ``published(row)`` the published tokens/s per GPU (NaN where none). A
    scenario the simulator refuses (ClusterSimError) is skipped with its message."""
    from hw_models.errors import ClusterSimError
    from workloads.model import presets
    zoo, out = presets(), []
    for row in frame.itertuples():
        base = {"source": row.source_id, "model": row.arch_id, "gpu": str(row.gpu_type).split()[0],
                "gpus": int(row.num_gpus), "precision": str(row.precision).split()[0],
                "plan": plan(row), "published_tok_s_gpu": published(row)}
        why = skip(row, zoo)
        if why is None:
            try:
                pred, info = predict(scenario(row, fidelity))
            except ClusterSimError as exc:
                why = f"not simulated: {exc}"
        if why is not None:
            out.append(base | {"predicted_tok_s_gpu": np.nan, "error_pct": np.nan, "skipped": why})
            continue
        err = (pred / base["published_tok_s_gpu"] - 1) * 100
        out.append(base | {"predicted_tok_s_gpu": round(pred, 1), "error_pct": round(err, 1),
                           "skipped": "", **info})
    return pd.DataFrame(out)


def summary(df: pd.DataFrame) -> dict:
    """Row counts and |error| figures of a run_rows frame: median, max, median by GPU."""
    done = df[df.skipped == ""]
    err = done.error_pct.abs()
    return {"rows": len(df), "predicted": len(done),
            "median_abs_error_pct": float(err.median()) if len(err) else float("nan"),
            "max_abs_error_pct": float(err.max()) if len(err) else float("nan"),
            "median_abs_error_pct_by_gpu": {g: float(d.error_pct.abs().median())
                                            for g, d in done.groupby("gpu")}}


def summary_line(label: str, s: dict, csv: str) -> str:
    """One line of a ``summary`` (label, rows predicted, median and max |error|, median by
    GPU, the CSV the rows come from)."""
    if not s["predicted"]:
        return f"{label} 0 of {s['rows']} predicted ({csv})"
    by_gpu = ", ".join(f"{g} {v:.1f}%" for g, v in s["median_abs_error_pct_by_gpu"].items())
    return (f"{label} {s['predicted']} of {s['rows']} predicted, median |error| "
            f"{s['median_abs_error_pct']:.1f}%, max {s['max_abs_error_pct']:.1f}%; by GPU: {by_gpu} "
            f"({csv})")
