"""Decode attention in the serving model is the paged decode kernel
(workloads/inference/ops.py paged_decode_op, hw_models/compute.py decode_attention)."""

from __future__ import annotations

import pytest

from hw_models import catalog
from hw_models.compute import ComputeModel
from hw_models.profile import load
from workloads.inference.ops import IterationOps, Shape
from workloads.model import resolve


def test_llama3_70b_tp8_decode_step_by_hand():
    """Llama-3-70B at TP 8 (8 query heads, 1 KV head of 128 per GPU), bf16 cache, 256
    sequences of 2,048 cached tokens: K and V 2 x 1 x 128 x 2 B x 524,288 tokens =
    268,435,456 B, queries and outputs 2 x 2 B x 256 x 8 x 128 = 1,048,576 B. On an H100
    (3.35 TB/s): 12.0 us + 269,484,032 B x (2048 + 71.2) / 2048 / 3.35e12 = 12.0 + 83.24
    = 95.24 us, against 0.8 us + the bytes at 0.876 of the HBM (92.6 us) as a plain
    memory-bound op."""
    ops = IterationOps(resolve("llama3-70b"), 8, 1, "bf16")
    op = next(o for o in ops.attention_ops(Shape(decode_seqs=256, decode_kv=256 * 2048, logits=256))
              if o.name == "decode_attn")
    assert op.op_class == "decode_attention"
    assert op.bytes == 268_435_456 + 1_048_576
    assert op.shape == (256, 1, 2048, 128)
    cm = ComputeModel(catalog.gpu("h100-sxm"), load("h100"))
    t = cm.time(op.op_class, op.flops, op.bytes, op.dtype, shape=op.shape)
    assert t * 1e6 == pytest.approx(12.0 + 269_484_032 * (2048 + 71.2) / 2048 / 3.35e12 * 1e6,
                                    rel=1e-9)
    assert t * 1e6 == pytest.approx(95.24, abs=0.01)


def test_short_contexts_pay_the_floor():
    """Eight sequences of 16 tokens read ~0.1 MB: the call costs its 12 us floor and the
    bytes at 16 / 87.2 of the HBM bandwidth, not a 0.8 us launch."""
    cm = ComputeModel(catalog.gpu("h100-sxm"), load("h100"))
    b = 2 * 1 * 128 * 2 * 8 * 16 + 2 * 2 * 8 * 8 * 128
    assert cm.decode_attention(b, 16) == pytest.approx(12.0e-6 + b * 87.2 / 16 / 3.35e12, rel=1e-9)
