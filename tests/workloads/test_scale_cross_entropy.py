"""Megatron's unfused vocab-parallel cross-entropy (workloads/layers.py ``_loss_bytes``):
the bytes of its element-wise passes over the fp32 logits, counted by hand from
megatron/core/tensor_parallel/cross_entropy.py, and the scenario key that selects it."""

import pytest

from sim.scenario import parse
from sim.setup import resolve_setup
from workloads.graph import Block, CommGroup
from workloads.layers import LayerContext, head_backward, head_forward
from workloads.model import resolve
from workloads.training import build

MODEL = {"layers": 2, "hidden": 512, "heads": 8, "vocab": 32000, "seq_len": 1024}


def _loss_op(ops, name):
    return next(o for o in ops if getattr(o, "name", "") == name)


@pytest.mark.parametrize("tp", [1, 4])
def test_unfused_loss_passes_by_hand(tp):
    m = resolve(MODEL)
    T, v_local = 2 * 1024, 32000 // tp          # micro-batch 2, the rank's vocabulary slice
    for fused, fwd_b, bwd_b in ((True, 2 + 12, 4 + 2),
                                # cast 2+4, max 4, sub 4+4, exp 4+4, sum 4, div 4+4 = 38;
                                # backward: mul 4+4, cast back 4+2 = 14
                                (False, 38, 14)):
        ctx = LayerContext(m, 2, tp, tp > 1, "bf16", CommGroup(tuple(range(tp)), "tp"),
                           fused_loss=fused)
        assert _loss_op(head_forward(ctx), "cross_entropy").bytes == fwd_b * T * v_local
        assert _loss_op(head_backward(ctx), "cross_entropy_bwd").bytes == bwd_b * T * v_local


def _graph_loss_bytes(fusion: bool) -> float:
    sc = parse({"name": "ce", "cluster": {"system": "dgx-h100", "nodes": 1},
                "workload": {"kind": "training", "model": MODEL, "global_batch": 8,
                             "micro_batch": 1, "parallel": {"tp": 1},
                             "cross_entropy_fusion": fusion}}, "ce")
    s = resolve_setup(sc)
    g = build(s.model, s.plan, s.options)
    return sum(o.bytes for n in g.nodes if isinstance(n.op, Block) for o in n.op.ops
               if getattr(o, "name", "") == "cross_entropy")


def test_scenario_key_reaches_the_graph():
    # One simulated rank, one microbatch per DP rank: 1024 tokens, the full vocabulary.
    assert _graph_loss_bytes(True) == 14 * 1024 * 32000
    assert _graph_loss_bytes(False) == 38 * 1024 * 32000
