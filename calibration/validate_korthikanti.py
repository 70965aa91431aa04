"""Korthikanti et al. (MLSys'23) Table 4: one transformer layer's forward and backward time.

The 22B model's layer (hidden 6144, 64 heads, s=2048, microbatch 4), tensor parallel over
the 8 GPUs of one DGX A100 80GB, in the five configurations of the paper: with and
without sequence parallelism, without recompute, with full and with selective activation
recompute. The Megatron-LM of the paper ran unfused attention (scaled-masked-softmax
kernels; FlashAttention came later), so the layer is costed with ``attention: unfused``.
With sequence parallelism the backward gathers the saved input shards of the QKV and MLP
up projections again beside their input-gradient GEMMs (section 4.2.2;
workloads/stage_ops.py ``sp_backward_gathers``). The input gradients' reduce-scatter
(all-reduce without sequence parallelism) is priced after the weight-gradient GEMM, not
beside it (``async_grad_reduce``): Megatron-LM at 80389ef issues it asynchronously but
only "tried to force" the collective to be scheduled ahead of the GEMM with a 3 us noop
kernel, which bdd9731 (October 2022) replaced by requiring CUDA_DEVICE_MAX_CONNECTIONS=1,
the ordering its docstring calls "necessary for a speedup". Priced beside the weight
gradient, the backward times come out 7-13% below the published ones. The published "backward" includes the recompute (a recomputed forward for full, the
attention core for selective), so the prediction adds ``layer_recompute`` to it.

Each time is the sum of the layer's kernels and TP collectives from the compute model
and the analytical network with the built-in A100 profile: no parameter is fitted here.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from hw_models.compute import ComputeModel
from sim.costs import OpCosts
from sim.scenario import parse
from sim.setup import make_network, resolve_setup
from workloads.graph import CommGroup
from workloads.layers import LayerContext, layer_backward, layer_forward, layer_recompute
from workloads.stage_ops import sp_backward_gathers

REF = resources.files("calibration").joinpath("reference", "training")
# Table 4's layer: the 22B model of Korthikanti et al. Table 3 (48 layers of hidden 6144,
# 64 heads), s = 2048, microbatch 4, t = 8 on one DGX A100 80GB.
MODEL = {"layers": 48, "hidden": 6144, "heads": 64, "vocab": 51200, "seq_len": 2048}
MICRO_BATCH, TP = 4, 8
# Experiment name in the table -> (sequence parallel, recompute).
EXPERIMENTS = {"baseline_no_recompute": (False, "none"), "sequence_parallel_only": (True, "none"),
               "full_recompute": (False, "full"), "selective_recompute_only": (False, "selective"),
               "selective_recompute_plus_sequence_parallel": (True, "selective")}


def layer_times_ms(sp: bool, recompute: str, attention: str = "unfused") -> tuple[float, float]:
    """(forward, backward incl. recompute) of one layer on one TP rank, milliseconds."""
    sc = parse({"name": "korthikanti-table4", "cluster": {"system": "dgx-a100", "nodes": 1},
                "workload": {"model": MODEL, "global_batch": MICRO_BATCH, "micro_batch": MICRO_BATCH,
                             "parallel": {"tp": TP, "sequence_parallel": sp},
                             "recompute": recompute, "attention": attention},
                "sim": {"check_memory": False}}, "korthikanti-table4")
    st = resolve_setup(sc)
    costs = OpCosts(ComputeModel(st.gpu, st.profile), make_network(st, st.profile))
    ctx = LayerContext(st.model, MICRO_BATCH, TP, sp, st.options.dtype,
                       CommGroup(tuple(range(TP)), "tp"), attention)
    fwd = sum(costs.op_time(o) for o in layer_forward(ctx))
    bwd_ops = sp_backward_gathers(ctx, layer_backward(ctx))    # the input shards re-gathered
    bwd = sum(costs.op_time(o) for o in bwd_ops + layer_recompute(ctx, recompute))
    return fwd * 1e3, bwd * 1e3


def run() -> pd.DataFrame:
    ref = pd.read_csv(REF.joinpath("korthikanti_table4_layer_times.csv"), comment="#")
    out = []
    for row in ref.itertuples():
        sp, rc = EXPERIMENTS[row.experiment]
        f, b = layer_times_ms(sp, rc)
        rec = {"experiment": row.experiment}
        for key, pub, pred in (("forward", row.forward_ms, f), ("backward", row.backward_ms, b),
                               ("combined", row.combined_ms, f + b)):
            rec |= {f"{key}_published_ms": pub, f"{key}_predicted_ms": round(pred, 2),
                    f"{key}_error_pct": round((pred / pub - 1) * 100, 1)}
        out.append(rec)
    return pd.DataFrame(out)


def summary(df: pd.DataFrame) -> dict:
    err = df[[c for c in df.columns if c.endswith("_error_pct")]].abs().to_numpy().ravel()
    comb = df.combined_error_pct.abs()
    return {"rows": len(df), "median_abs_error_pct": float(np.median(err)),
            "max_abs_error_pct": float(err.max()),
            "combined_median_abs_error_pct": float(np.median(comb))}


SUITE = "korthikanti"


def dashboard_rows() -> list[dict]:
    """Rows for ``clustersim validate all``: forward, backward and combined per experiment."""
    return [{"name": f"{r['experiment']} {key}", "predicted": r[f"{key}_predicted_ms"],
             "published": r[f"{key}_published_ms"], "unit": "ms", "kind": "time"}
            for r in run().to_dict("records") for key in ("forward", "backward", "combined")]
