"""The layer options of TrainingOptions.layer_options on MoE models, as on dense ones:
unfused gradient accumulation adds every weight gradient of the rank (the routed experts
included) into its main gradient per microbatch, and ``repeat_kv`` copies GQA's K,V to
every query head around the attention kernel. Sizes by hand."""

import pytest

from workloads.graph import Block, CommGroup
from workloads.layers import LayerContext, attention_core, attention_core_bwd
from workloads.model import ModelSpec
from workloads.moe_layers import layer_backward_at, layer_forward_at, make_context
from workloads.parallel import ParallelPlan
from workloads.training import TrainingOptions, build

H, V, E, F, FFN = 256, 1000, 8, 512, 1024
MOE = {"experts": E, "top_k": 2, "expert_ffn_hidden": F, "dense_layers": 1}


def _model(**kw) -> ModelSpec:
    return ModelSpec(layers=4, hidden=H, heads=8, vocab=V, seq_len=128, ffn_hidden=FFN,
                     activation="swiglu", norm="rmsnorm", bias=False, rope=True,
                     tied_embeddings=False, moe=MOE, **kw)


def _accum_bytes(ops) -> float:
    return sum(o.bytes for o in ops if getattr(o, "name", "") == "accumulate_wgrad")


def test_unfused_accumulation_adds_every_local_parameter_per_microbatch():
    # tp 2, pp 2, dp 2, ep 2: stage 0 holds the dense layer 0 and the MoE layer 1 and the
    # embedding, stage 1 the MoE layers 2, 3 and the (untied) output layer.
    tp, ep = 2, 2
    plan = ParallelPlan(tp=tp, pp=2, dp=2, ep=ep, micro_batch=1, global_batch=8)
    opts = TrainingOptions(grad_bytes=2, grad_accumulation_fusion=False)
    g = build(_model(), plan, opts)
    attn_norms = 4 * H * H + 2 * H                      # q, k, v, o (MHA, no bias), 2 RMSNorms
    dense = attn_norms + 3 * H * FFN                    # SwiGLU MLP
    moe_local = (attn_norms + H * E) / tp + E * 3 * H * F / ep   # router; experts over ep
    table = V * H / tp
    per_mb = {plan.rank(0, 0, 0): dense / tp + moe_local + table,
              plan.rank(0, 0, 1): 2 * moe_local + table}
    for rank, params in per_mb.items():
        got = sum(_accum_bytes(n.op.ops) for n in g if n.rank == rank and isinstance(n.op, Block))
        assert got == pytest.approx(plan.microbatches * 6 * params, rel=1e-12)   # 2+2+2 B


def test_fused_accumulation_adds_nothing():
    plan = ParallelPlan(tp=2, pp=2, dp=2, ep=2, micro_batch=1, global_batch=8)
    g = build(_model(), plan, TrainingOptions())
    assert not any(_accum_bytes(n.op.ops) for n in g if isinstance(n.op, Block))


@pytest.mark.parametrize("repeat_kv, kv_heads, copies", [(True, 2, 1), (False, 2, 0), (True, 8, 0)])
def test_repeat_kv_copies_gqa_heads_as_a_dense_layer(repeat_kv, kv_heads, copies):
    """With tp 2, 4 query and 1 KV head per rank: the copy reads the KV heads and writes
    them for every query head, 2 (K, V) x 2 bytes x tokens x head dim x (4 + 1), forward
    and (the sum back) backward; not without GQA or without the option."""
    model = _model(kv_heads=kv_heads)
    ctx = LayerContext(model, 1, 2, True, "bf16", CommGroup((0, 1), "tp"), repeat_kv=repeat_kv,
                       moe=make_context((0, 2), (0,), "alltoall", 1.0, 8))
    tokens, d = 128, H // 8
    for i in (0, 1):                                    # the dense and the MoE layer
        fwd = [o for o in layer_forward_at(ctx, i) if o.name == "repeat_kv"]
        bwd = [o for o in layer_backward_at(ctx, i) if o.name == "repeat_kv_bwd"]
        assert [o.bytes for o in fwd] == [2 * 2 * tokens * d * (4 + 1)] * copies
        assert [o.bytes for o in bwd] == [o.bytes for o in fwd]
    dense_fwd = [o for o in attention_core(ctx) if o.name == "repeat_kv"]
    dense_bwd = [o for o in attention_core_bwd(ctx) if o.name == "repeat_kv_bwd"]
    assert dense_fwd == fwd and dense_bwd == bwd
