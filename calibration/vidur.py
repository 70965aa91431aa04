"""Vidur's transformer-layer operators through the compute model, and the cross-model
check: fit the GEMM curve on some models' measured operators, predict the others'.

Operator names and meanings follow Vidur's profiling CSVs
(calibration/reference/vidur/compute, times in ms per TP rank).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from calibration.parsers import VIDUR_GEMMS, vidur_gemm_shapes
from hw_models.compute import ComputeModel, gemm_bytes
from workloads.model import ModelSpec

VIDUR_OPS = ("emb", "input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj",
             "post_attention_layernorm", "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")


@dataclass(frozen=True)
class LayerShape:
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    gated: bool

    @classmethod
    def of(cls, m: ModelSpec) -> LayerShape:
        return cls(m.hidden, m.heads, m.kv_heads_, m.ffn, m.gated)


def op_costs(s: LayerShape, tokens: int, tp: int) -> dict[str, tuple[str, float, float]]:
    """(op class, FLOPs, bytes) per operator per TP rank for ``tokens`` tokens in 2-byte
    elements. GEMMs as (m, n, k) = (tokens, out/tp, in) of the column/row-parallel
    linears (Megatron); memory ops read and write their activations once."""
    eb, t, h, hd = 2, tokens, s.hidden, s.hidden // s.heads
    ffn_t = s.ffn // tp
    up = ffn_t * (2 if s.gated else 1)
    gemms = {"attn_pre_proj": (t, (s.heads + 2 * s.kv_heads) * hd // tp, h),
             "attn_post_proj": (t, h, h // tp), "mlp_up_proj": (t, up, h),
             "mlp_down_proj": (t, h, ffn_t)}
    out = {op: ("gemm", 2.0 * m * n * k, gemm_bytes(m, n, k, eb)) for op, (m, n, k) in gemms.items()}
    rope = 2 * t * (s.heads + s.kv_heads) // tp * hd * eb          # q and k, read + write
    act = t * ffn_t * eb * (3 if s.gated else 2)                     # SwiGLU reads gate and up
    out |= {"emb": ("embedding", 0.0, 2.0 * t * h * eb),
            "input_layernorm": ("norm", 0.0, 2.0 * t * h * eb),
            "post_attention_layernorm": ("norm", 0.0, 2.0 * t * h * eb),
            "attn_rope": ("elementwise", 0.0, float(rope)), "mlp_act": ("elementwise", 0.0, float(act)),
            "add": ("elementwise", 0.0, 3.0 * t * h * eb)}
    return {op: out[op] for op in VIDUR_OPS}


def predict_ops_ms(cm: ComputeModel, s: LayerShape, tokens: int, tp: int,
                   dtype: str = "fp16") -> dict[str, float]:
    return {op: cm.time(cls, f, b, dtype) * 1e3 for op, (cls, f, b) in op_costs(s, tokens, tp).items()}


def gemm_rows(ops: pd.DataFrame) -> pd.DataFrame:
    """Measured GEMM operators as tidy rows (model, op, m, n, k, time_s)."""
    frames = []
    for op in VIDUR_GEMMS:
        g = vidur_gemm_shapes(ops, op)
        g["op"], g["model"] = op, ops["model"].to_numpy()
        frames.append(g)
    return pd.concat(frames, ignore_index=True)


def cross_model_errors(ops: pd.DataFrame, train: list[str], predict) -> pd.DataFrame:
    """Median/p90 |error| per operator on the models not in ``train``. ``predict`` maps
    the (m, n, k) arrays of the test rows to seconds with a curve fitted on ``train``."""
    rows = gemm_rows(ops)
    test = rows[~rows.model.isin(train)].copy()
    test["pred_s"] = predict(test.m.to_numpy(float), test.n.to_numpy(float), test.k.to_numpy(float))
    test["err"] = np.abs(test.pred_s / test.time_s - 1)
    return (test.groupby("op")["err"]
            .agg(median_err_pct=lambda e: 100 * e.median(), p90_err_pct=lambda e: 100 * e.quantile(0.9),
                 n="size").reset_index())
