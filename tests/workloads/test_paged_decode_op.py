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
    (3.35 TB/s, STREAM share 0.8761): the share at 2048 tokens is 0.8761 x r / (r + 1)
    with r = (2048 / 51.8)^1.443 = 201.6, 0.8718; 12.36 us + 269,484,032 B / (3.35e12 x
    0.8718) = 12.36 + 92.27 = 104.6 us, against 0.8 us + the bytes at 0.876 of the HBM
    (92.6 us) as a plain memory-bound op."""
    ops = IterationOps(resolve("llama3-70b"), 8, 1, "bf16")
    op = next(o for o in ops.attention_ops(Shape(decode_seqs=256, decode_kv=256 * 2048, logits=256))
              if o.name == "decode_attn")
    assert op.op_class == "decode_attention"
    assert op.bytes == 268_435_456 + 1_048_576
    assert op.shape == (256, 1, 2048, 128)
    cm = ComputeModel(catalog.gpu("h100-sxm"), load("h100"))
    t = cm.time(op.op_class, op.flops, op.bytes, op.dtype, shape=op.shape)
    r = (2048 / 51.8) ** 1.443
    assert t * 1e6 == pytest.approx(12.36 + 269_484_032 / (3.35e12 * 0.8761 * r / (r + 1)) * 1e6,
                                    rel=1e-9)
    assert t * 1e6 == pytest.approx(104.6, abs=0.1)


def test_short_contexts_pay_the_floor():
    """Eight sequences of 16 tokens read ~0.1 MB: the call costs its 12.36 us floor and the
    bytes at 0.8761 r / (r + 1) of the HBM bandwidth, r = (16 / 51.8)^1.443 = 0.183 (a
    share of 0.136), not a 0.8 us launch."""
    cm = ComputeModel(catalog.gpu("h100-sxm"), load("h100"))
    b = 2 * 1 * 128 * 2 * 8 * 16 + 2 * 2 * 8 * 8 * 128
    r = (16 / 51.8) ** 1.443
    assert cm.decode_attention(b, 16) == pytest.approx(12.36e-6 + b / (3.35e12 * 0.8761 * r / (r + 1)),
                                                       rel=1e-9)
