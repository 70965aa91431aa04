"""Kernels the host issues for a MoE layer in eager training, counted from Megatron-Core's
router (core 0.15-0.18) and Transformer Engine's GroupedLinear (TE 2.9-2.16), by hand.

One MoE layer: hidden 256, 8 experts top-2, 128 tokens x micro-batch 2 = 256 tokens per
rank (tp 1), EP 2 (4 local experts), 16-bit activations.
"""

import pytest

from workloads import fp8
from workloads.graph import CommGroup, Compute
from workloads.host_launch import is_sync, launches
from workloads.layers import LayerContext
from workloads.model import ModelSpec
from workloads.moe_layers import make_context, moe_backward, moe_forward, router_launches

H, E, K, S, EP = 256, 8, 2, 128, 2
LOCAL = E // EP


def _ctx(**moe) -> LayerContext:
    model = ModelSpec(layers=2, hidden=H, heads=8, vocab=1000, seq_len=S, ffn_hidden=1024,
                      activation="swiglu", norm="rmsnorm", bias=False, rope=True,
                      tied_embeddings=False, moe={"experts": E, "top_k": K, "expert_ffn_hidden": 512})
    return LayerContext(model, 2, 1, False, "bf16", CommGroup((0,), "tp"),
                        moe=make_context(tuple(range(EP)), (0,), "alltoall", 1.0, 8, **moe))


def _topk(ops) -> Compute:
    (op,) = [o for o in ops if getattr(o, "name", "") in ("router_topk", "router_topk_bwd")]
    return op


@pytest.mark.parametrize("moe, fwd, bwd", [
    # TE fused_topk_with_score_function: one kernel each way
    ({"router_fusion": True}, 1, 1),
    # + fused aux loss: score kernel, routing_map.sum, fused loss, tracker divide and add (5);
    #   backward: ones_like * scale (2), two fused backward kernels, sum into the logits (5)
    ({"router_fusion": True, "aux_loss": True}, 6, 6),
    # PyTorch path, fp32 logits: topk, softmax, zeros_like + scatter (3), zeros_like + int +
    # scatter (2) + bool (5) = 10; backward gather, softmax backward, topk backward (2) = 4
    ({"router_dtype": "fp32"}, 10, 4),
    # fp64 logits (NeMo RL): softmax's input cast and type_as back, and their backward casts
    ({"router_dtype": "fp64"}, 12, 6),
    # 16-bit logits with the unfused aux loss: 12 + (softmax + cast, topk, map 5, sum, loss 4,
    # tracker 2 = 15); backward 6 + (scaler 2, scale and product 2, softmax bwd + cast, sum = 7)
    ({"aux_loss": True}, 27, 13),
])
def test_router_scoring_kernels_from_megatron_core(moe, fwd, bwd):
    ctx = _ctx(**moe)
    assert router_launches(ctx, False) == fwd and router_launches(ctx, True) == bwd
    assert launches(_topk(moe_forward(ctx))) == fwd
    assert launches(_topk(moe_backward(ctx))) == bwd
    assert launches(_topk(moe_forward(ctx)), frozenset({"moe_router"})) == 0   # captured


def test_one_moe_layer_forward_launches_by_hand():
    """Fused router with aux loss, MXFP8, all-to-all dispatcher, fused permutation:
    router GEMM 1 + scoring 6; permute: the dispatcher's count bookkeeping (7 kernels, 4
    copies to the host) and TE's row-id map (3) and permute (1) = 15; the all-to-alls of
    the tokens and of their probabilities 2; TE's chunk sort 2; per local expert an fc1
    input cast and GEMM (2 x 4), activation 1, per expert an fc2 cast and GEMM (2 x 4);
    unsort 2, the combine's all-to-all 1, unpermute 1: 47 launches and one sync."""
    ops = fp8.rewrite(moe_forward(_ctx(router_fusion=True, aux_loss=True)), "mxfp8")
    assert sum(launches(o) for o in ops) == 7 + 15 + 2 + 2 + 2 * LOCAL + 1 + 2 * LOCAL + 2 + 1 + 1 == 47
    assert sum(map(is_sync, ops)) == 1
    casts = [o for o in ops if "_cast_" in getattr(o, "name", "")]
    assert len(casts) == 2 * LOCAL and {launches(c) for c in casts} == {1}


def test_one_moe_layer_backward_launches_by_hand():
    """The same layer backward: unpermute's backward 1, the combine's all-to-all 1, the
    unsort's 1, per local expert fc2's gradient cast, dgrad and wgrad (3 x 4), the
    activation's backward 1, fc1's 3 x 4, the sort's 1, the dispatch's two all-to-alls 2,
    the permutation's backward 1, the scoring's 6, the router's dgrad and wgrad 2: 40."""
    ops = fp8.rewrite(moe_backward(_ctx(router_fusion=True, aux_loss=True)), "mxfp8")
    assert sum(launches(o) for o in ops) == 1 + 1 + 1 + 3 * LOCAL + 1 + 3 * LOCAL + 1 + 2 + 1 + 6 + 2 == 40


def test_dispatcher_bookkeeping_only_where_the_all_to_all_dispatcher_runs():
    """Unfused permutation: the bookkeeping (7 + 4, and the per-local-expert counts'
    copy) rides on the routing map's transpose; the chunk sort is a torch.cat of the
    tokens and one of the probabilities (2), the unsort one cat (1)."""
    ops = moe_forward(_ctx(permute_fusion=False))
    by = {o.name: launches(o) for o in ops if hasattr(o, "name")}
    assert by["permute_map"] == 1 + 7 + 4 + 1
    assert by["expert_sort"] == 2 and by["expert_unsort"] == 1
    ag = LayerContext(_ctx().model, 2, 1, False, "bf16", CommGroup((0,), "tp"),
                      moe=make_context(tuple(range(EP)), (0,), "allgather", 1.0, 8))
    assert {launches(o) for o in moe_forward(ag) if getattr(o, "name", "") == "permute"} == {4}


def test_current_scaling_expert_casts_issue_amax_scale_and_cast():
    """FP8 current scaling: each local expert's split is quantized by three kernels
    (nvte_compute_amax, nvte_compute_scale_from_amax, nvte_quantize_v2)."""
    ops = fp8.rewrite(moe_forward(_ctx()), "tensorwise")
    casts = [o for o in ops if "_tensorwise_cast_" in getattr(o, "name", "")]
    assert len(casts) == 2 * LOCAL and {launches(c) for c in casts} == {3}
    delayed = [o for o in fp8.rewrite(moe_forward(_ctx()), "delayed") if "_cast_" in getattr(o, "name", "")]
    assert len(delayed) == 2 and {launches(c) for c in delayed} == {1}   # one fused kernel each

