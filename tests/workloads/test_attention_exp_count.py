"""Attention ops carry their softmax exponential count (``flops_per_exp``): one exponential
per score element forward and one backward (P recomputed)."""

from __future__ import annotations

import pytest

from workloads.graph import CommGroup
from workloads.layer_attention import fused_attention
from workloads.layers import LayerContext, attention_core, attention_core_bwd
from workloads.model import presets


def test_dense_layer_counts_one_exponential_per_causal_score_element_each_way():
    """Llama 3 8B, micro-batch 1, no TP: 32 heads x s^2 / 2 score elements per layer, the
    forward and the backward each evaluating one exponential per element."""
    model = presets()["llama3-8b"]
    ctx = LayerContext(model, 1, 1, False, "bf16", CommGroup((0,)), "flash")
    s = model.seq_len
    elements = model.heads * s * s / 2
    fwd = [op for op in attention_core(ctx) if op.op_class == "attention"][0]
    bwd = [op for op in attention_core_bwd(ctx) if op.op_class == "attention"][0]
    assert fwd.flops / fwd.flops_per_exp == pytest.approx(elements, rel=1e-12)
    assert bwd.flops / bwd.flops_per_exp == pytest.approx(elements, rel=1e-12)


def test_moe_fused_attention_counts_windowed_pairs():
    """gpt-oss (d_qk = d_v = 64): the windowed forward evaluates one exponential per pair
    inside the 128-token window, s w - w (w - 1) / 2 per head."""
    model = presets()["gpt-oss-20b"]
    ctx = LayerContext(model, 1, 1, False, "bf16", CommGroup((0,)), "flash")
    s, w = model.seq_len, min(model.sliding_window.size, model.seq_len)
    op = fused_attention(ctx, True, 64, 64, False)
    assert op.flops / op.flops_per_exp == pytest.approx(ctx.local_heads * (s * w - w * (w - 1) / 2))
