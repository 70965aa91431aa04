"""Megatron-Core's recompute_modules [layernorm, moe_act] (``recompute: norm_moe_act``):
before a layer's backward the input and pre-MLP norms, and in a MoE layer the routed
experts' activation, run again. Sizes by hand on a small model."""

import pytest

from workloads.graph import Block, CommGroup
from workloads.layers import LayerContext, layer_recompute
from workloads.model import ModelSpec
from workloads.moe_layers import layer_recompute_at, make_context
from workloads.parallel import ParallelPlan
from workloads.training import TrainingOptions, build

H, V, E, F, FFN, S = 256, 1000, 8, 512, 1024, 128
MOE = {"experts": E, "top_k": 2, "expert_ffn_hidden": F, "dense_layers": 1}


def _model() -> ModelSpec:
    return ModelSpec(layers=4, hidden=H, heads=8, vocab=V, seq_len=S, ffn_hidden=FFN,
                     activation="swiglu", norm="rmsnorm", bias=False, rope=True,
                     tied_embeddings=False, moe=MOE)


def _ctx() -> LayerContext:
    # micro-batch 2, tp 1, ep 2 (experts 0-3 and 4-7): 256 tokens, 512 routed copies per rank
    return LayerContext(_model(), 2, 1, False, "bf16", CommGroup((0,), "tp"),
                        moe=make_context((0, 1), (0,), "alltoall", 1.0, 8))


ROUTED = 2 * S * 2                   # 256 tokens, top-2
NORM = 2 * 2 * 2 * S * H           # read + write, 2 bytes, 256 tokens x hidden
ACT = 3 * 2 * (2 * S * 2) * F      # SwiGLU reads gate and up, writes one: 512 copies x F


def test_moe_layer_reruns_both_norms_and_the_expert_activation():
    ops = layer_recompute_at(_ctx(), 1, "norm_moe_act")
    assert [o.name for o in ops] == ["input_norm", "post_attn_norm", "expert_activation"]
    assert [o.bytes for o in ops] == [NORM, NORM, ACT]
    assert sum(o.flops for o in ops) == 0                  # no GEMM runs again


def test_dense_layer_reruns_its_norms_only():
    ctx = _ctx()
    assert [o.bytes for o in layer_recompute_at(ctx, 0, "norm_moe_act")] == [NORM, NORM]
    assert [o.bytes for o in layer_recompute(ctx, "norm_moe_act")] == [NORM, NORM]
    assert layer_recompute_at(ctx, 1, "none") == []


def test_whole_graph_adds_the_recompute_per_layer_and_microbatch():
    """pp 1, dp 2, ep 2, 4 micro-batches of 2 per rank: 1 dense + 3 MoE layers re-run
    4 x (2 norms each + 3 expert activations) on every rank."""
    def total(recompute: str) -> float:
        plan = ParallelPlan(tp=1, pp=1, dp=2, ep=2, micro_batch=2, global_batch=16, recompute=recompute)
        g = build(_model(), plan, TrainingOptions())
        return sum(o.bytes for n in g if n.rank == 0 and isinstance(n.op, Block)
                   for o in n.op.ops if hasattr(o, "bytes"))
    extra = total("norm_moe_act") - total("none")
    assert extra == pytest.approx(4 * (4 * 2 * NORM + 3 * ACT), rel=1e-12)


def test_memory_keeps_neither_norm_outputs_nor_the_expert_activation():
    """Stored per layer and micro-batch: 2 x (2 bytes x 256 tokens x H) fewer for the
    norm outputs, and in a MoE layer 2 bytes x 512 routed rows x F fewer for the
    experts' activation output; the dense layer formula of workloads/memory.py the same."""
    from workloads.memory import activation_bytes_per_layer
    from workloads.moe_memory import layer_activation_bytes

    def stored(i: int, recompute: str) -> float:
        plan = ParallelPlan(tp=1, pp=1, dp=2, ep=2, micro_batch=2, global_batch=16,
                            recompute=recompute)
        return layer_activation_bytes(_model(), i, plan, 1.0)
    norms, act = 2 * 2 * 2 * S * H, 2 * ROUTED * F
    assert stored(0, "none") - stored(0, "norm_moe_act") == norms
    assert stored(1, "none") - stored(1, "norm_moe_act") == norms + act
    dense = [activation_bytes_per_layer(_model(), 2, 1, False, rc, flash=True)
             for rc in ("none", "norm_moe_act")]
    assert dense[0] - dense[1] == norms
