"""Megatron-LM SC'21 validation: predicted vs published TFLOP/s per GPU.

Rows: Table 1 (weak scaling, all rows) and Table 2's PTD-P rows. Configuration as the
paper states it: DGX A100 80GB (Selene), fp16, s=2048, V=51200, full activation
recompute, microbatch 1 (Table 2), and the Megatron-LM of 2021: unfused attention
(scaled-masked-softmax kernels), the unfused vocab-parallel cross-entropy, no sequence
parallelism, and the TP all-reduce of each linear's input gradient after its weight
gradient (Megatron-LM's asynchronous all-reduce beside the weight gradient came in
August 2021, cf7efd4, after the paper's runs and its examples/sc21 scripts:
``async_tp_grad_reduce`` off). Table 1 does not state its
micro-batch sizes, schedule or DDP; Megatron-LM's examples/sc21/run_table_1.sh (the
script that produced it) does, and the CSV carries them: micro-batch 16 to 1, the
interleaved schedule for the 76B-530B rows (``layers_per_virtual_stage``), PyTorch DDP
(gradient all-reduce overlapped with the backward) for the PP=1 rows and Megatron's
local DDP (all-reduce after the backward) for the others. Table 2's rows: the
non-interleaved 1F1B schedule, all-reduce after the backward. The published
metric counts recompute: F = 96 B s l h^2 (1 + s/(6h) + V/(16 l h)) per iteration,
and we divide that same F by the predicted iteration time.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from sim.progress import progress
from sim.scenario import parse
from sim.simulate import simulate
from workloads.model import megatron_flops

REF = resources.files("calibration").joinpath("reference", "training")
GPUS_PER_NODE = 8   # DGX A100


def _table1() -> pd.DataFrame:
    df = pd.read_csv(REF.joinpath("megatron_sc21_table1.csv"), comment="#")
    df["table"] = "T1"
    df["vpp"] = [max(1, lay // (pp * lv)) if lv else 1
                 for lay, pp, lv in zip(df.layers, df.pp, df.layers_per_virtual_stage,
                                             strict=True)]
    df["model"] = [f"megatron-{p:g}b" if p < 1000 else "megatron-1t" for p in df.params_b]
    return df


def _table2() -> pd.DataFrame:
    df = pd.read_csv(REF.joinpath("megatron_sc21_table2.csv"), comment="#")
    df = df[df.scheme == "PTD-P"].copy()
    df["table"] = "T2"
    # model_parallel = t*p with t = 8 (one DGX node), as the paper states for PTD-P.
    df["tp"] = 8
    df["pp"] = df.model_parallel // 8
    df["model"] = df.params_b.map({174.6: "gpt3-175b", 529.6: "megatron-529.6b"})
    df["micro_batch"], df["vpp"], df["ddp"] = df.microbatch, 1, "local"
    return df


def rows() -> pd.DataFrame:
    cols = ["table", "model", "tp", "pp", "gpus", "global_batch", "tflops_per_gpu",
            "micro_batch", "vpp", "ddp"]
    return pd.concat([_table1()[cols], _table2()[cols]], ignore_index=True)


def scenario_for(row) -> dict:
    return {
        "name": f"sc21-{row.table}-{row.model}-{row.gpus}",
        "cluster": {"system": "dgx-a100", "nodes": int(row.gpus) // GPUS_PER_NODE},
        "workload": {"kind": "training", "model": row.model, "global_batch": int(row.global_batch),
                     "micro_batch": int(row.micro_batch), "precision": "fp16",
                     "parallel": {"tp": int(row.tp), "pp": int(row.pp), "vpp": int(row.vpp),
                                  "schedule": "interleaved" if row.vpp > 1 else "1f1b"},
                     "recompute": "full", "attention": "unfused", "cross_entropy_fusion": False,
                     "p2p_blocking": True, "grad_accumulation_fusion": False,
                     "async_tp_grad_reduce": False,
                     "overlap_grad_reduce": row.ddp == "torch"},
        "sim": {"fidelity": "analytical"},
    }


def prediction_fields(res, per_s: float, published: float, band: bool) -> dict:
    """Published and predicted TFLOP/s per GPU, the error, the step and its breakdown.
    ``per_s`` is one step's model TFLOP per GPU (TFLOP/s = per_s / iteration time);
    ``band`` adds the TFLOP/s at the band's corners."""
    pred = per_s / res.iteration_time_s
    rec = {"published_tflops": published, "predicted_tflops": round(pred, 1),
           "error_pct": round((pred / published - 1) * 100, 1),
           "iteration_s": round(res.iteration_time_s, 3),
           **{f"{k}_pct": round(v / res.iteration_time_s * 100, 1)
              for k, v in res.breakdown.items()}}
    if band and res.band:
        lo, hi = res.band["iteration_time_s"]
        rec |= {"tflops_low": per_s / hi, "tflops_high": per_s / lo}
    return rec


def run(fidelity: str = "analytical", band: bool = False) -> pd.DataFrame:
    """One row per published configuration; ``band`` adds the bootstrap band of the
    prediction (``tflops_low``, ``tflops_high``)."""
    out = []
    table = rows()
    for row in progress(table.itertuples(), total=len(table), desc="megatron-sc21", unit="row"):
        sc = scenario_for(row)
        sc["sim"]["fidelity"] = fidelity
        res = simulate(parse(sc, sc["name"]), band=band, residuals=False)
        m = parse(sc).workload
        from workloads.model import resolve
        spec = resolve(m.model)
        flops = megatron_flops(int(row.global_batch), spec.seq_len, spec.layers, spec.hidden, spec.vocab)
        per_s = flops / int(row.gpus) / 1e12             # TFLOP/s per GPU = per_s / time
        rec = {"table": row.table, "model": row.model, "gpus": int(row.gpus),
               "tp": int(row.tp), "pp": int(row.pp), "batch": int(row.global_batch),
               **prediction_fields(res, per_s, float(row.tflops_per_gpu), band)}
        out.append(rec)
    return pd.DataFrame(out)


SUITE = "sc21"


def dashboard_rows() -> list[dict]:
    """Rows for ``clustersim validate all`` (calibration/dashboard.py)."""
    df = run(band=True)
    return [{"name": f"{r.table} {r.model} {r.gpus} GPUs", "predicted": r.predicted_tflops,
             "published": r.published_tflops, "unit": "TFLOP/s", "kind": "rate",
             "low": getattr(r, "tflops_low", None), "high": getattr(r, "tflops_high", None)}
            for r in df.itertuples()]


def summary(df: pd.DataFrame) -> dict:
    err = df.error_pct.abs()
    return {"rows": len(df), "median_abs_error_pct": float(np.median(err)),
            "max_abs_error_pct": float(err.max()), "rows_over_20pct": int((err > 20).sum())}
