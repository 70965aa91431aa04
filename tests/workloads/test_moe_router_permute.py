"""The router's type (moe_router_dtype), a frozen router and the unfused token permutation
(moe_permute_fusion off), as Megatron-Core runs them; byte counts by hand.

One MoE layer: hidden 256, 8 experts top-2, 128 tokens x micro-batch 2 = 256 tokens per
rank (tp 1), EP 2 (4 local experts), 16-bit activations (e = 2).
"""

import pytest

from hw_models import catalog
from hw_models.errors import ClusterSimError
from workloads.graph import Collective, CommGroup
from workloads.host_launch import is_sync
from workloads.layers import LayerContext
from workloads.model import ModelSpec
from workloads.moe_layers import make_context, moe_backward, moe_forward

H, E, K, S = 256, 8, 2, 128
N = 2 * S                              # tokens per rank
EP = 2


def _ctx(dispatcher: str = "alltoall", **moe) -> LayerContext:
    model = ModelSpec(layers=2, hidden=H, heads=8, vocab=1000, seq_len=S, ffn_hidden=1024,
                      activation="swiglu", norm="rmsnorm", bias=False, rope=True,
                      tied_embeddings=False, moe={"experts": E, "top_k": K, "expert_ffn_hidden": 512})
    return LayerContext(model, 2, 1, False, "bf16", CommGroup((0,), "tp"),
                        moe=make_context(tuple(range(EP)), (0,), dispatcher, 1.0, 8, **moe))


def _named(ops, *prefixes):
    return [o for o in ops if getattr(o, "name", "").startswith(prefixes)]


def test_default_router_is_16_bit_with_fp32_topk_and_its_weight_gradient():
    fwd, bwd = moe_forward(_ctx()), moe_backward(_ctx())
    router = _named(fwd, "router")
    assert [o.name for o in router] == ["router", "router_topk"]
    assert router[0].dtype == "bf16" and router[0].flops == 2 * N * E * H
    assert router[1].bytes == 3 * 4 * N * E
    assert [o.name for o in _named(bwd, "router")] == ["router_topk_bwd", "router_dgrad", "router_wgrad"]


def test_fp64_router_casts_its_input_and_runs_its_gemm_in_fp64():
    fwd = moe_forward(_ctx(router_dtype="fp64"))
    cast, gemm, topk = _named(fwd, "router")
    assert cast.name == "router_cast" and cast.bytes == (2 + 8) * (N + E) * H   # input and weight
    assert gemm.dtype == "fp64" and gemm.flops == 2 * N * E * H
    assert topk.bytes == 3 * 8 * N * E                                       # fp64 logits
    bwd = _named(moe_backward(_ctx(router_dtype="fp64")), "router")
    assert [o.name for o in bwd] == ["router_topk_bwd", "router_dgrad", "router_wgrad", "router_cast_bwd"]
    assert bwd[1].dtype == bwd[2].dtype == "fp64" and bwd[3].bytes == (8 + 2) * N * H


def test_frozen_router_has_no_weight_gradient_gemm():
    bwd = _named(moe_backward(_ctx(router_dtype="fp64", freeze_router=True)), "router")
    assert [o.name for o in bwd] == ["router_topk_bwd", "router_dgrad", "router_cast_bwd"]


def test_fp64_peaks_in_the_catalog():
    # H100 SXM datasheet: FP64 Tensor Core 67 TFLOPS; GB200 NVL72: 3,240 TFLOPS / 72 GPUs
    assert catalog.gpu("h100-sxm").peak_flops("fp64") == pytest.approx(66.9e12)
    assert catalog.gpu("gb200").peak_flops("fp64") == pytest.approx(3240e12 / 72)
    with pytest.raises(ClusterSimError, match="does not support fp64"):
        catalog.gpu("b200").peak_flops("fp64")


def test_fused_permutation_keeps_one_sync_and_its_passes():
    fwd, bwd = moe_forward(_ctx()), moe_backward(_ctx())
    assert sum(map(is_sync, fwd)) == 1
    assert [(o.name, o.bytes) for o in _named(fwd, "permute", "unpermute")] == [
        ("permute", 2 * N * H * (1 + K)), ("unpermute", 2 * N * H * (1 + K))]
    assert [(o.name, o.bytes) for o in _named(bwd, "permute", "unpermute")] == [
        ("unpermute_bwd", 2 * N * H * (2 + K)), ("permute_bwd", 2 * N * H * (1 + K))]


def test_unfused_permutation_syncs_twice_more_and_moves_every_copy():
    fwd = moe_forward(_ctx(permute_fusion=False))
    # masked_select of the token indices and of the probabilities, then the dispatcher's sync
    assert sum(map(is_sync, fwd)) == 3
    names = ["sync" if is_sync(o) else o.name for o in fwd[:9]]
    assert names == ["router", "router_topk", "permute_map", "permute_indices", "sync",
                     "permute_probs", "sync", "permute", "sync"]
    ops = {o.name: o.bytes for o in _named(fwd, "permute", "unpermute")}
    copies = N * K
    assert ops["permute_map"] == 2 * N * E                       # bool map transposed
    assert ops["permute_indices"] == N * E + 2 * 8 * copies       # int64 indices gathered
    assert ops["permute_probs"] == 2 * 2 * N * E + N * E + 2 * 2 * copies
    assert ops["permute"] == 2 * 2 * copies * H                   # index_select: read + write
    assert ops["unpermute_zeros"] == 2 * N * H
    assert ops["unpermute"] == 2 * N * H * (K + 2)                # scatter_add_: copies + output
    bwd = {o.name: o.bytes for o in _named(moe_backward(_ctx(permute_fusion=False)), "permute", "unpermute")}
    assert bwd["unpermute_bwd"] == 2 * 2 * copies * H             # gather into the copies
    assert bwd["permute_bwd_zeros"] == 2 * N * H
    assert bwd["permute_bwd"] == 2 * N * H * (K + 2)              # index_add_
    assert sum(map(is_sync, moe_backward(_ctx(permute_fusion=False)))) == 0


def _colls(ops):
    return [(o.kind, o.bytes, o.name) for o in ops if isinstance(o, Collective)]


def test_allgather_dispatch_gathers_the_map_and_probabilities():
    fwd = _colls(moe_forward(_ctx("allgather")))
    assert fwd == [("all_gather", 2 * N * H * EP, "ep_all_gather_dispatch"),
                   ("all_gather", 2 * N * E * EP, "ep_all_gather_dispatch_probs"),
                   ("all_gather", N * E * EP, "ep_all_gather_dispatch_map"),
                   ("reduce_scatter", 2 * N * H * EP, "ep_reduce_scatter_combine")]
    bwd = _colls(moe_backward(_ctx("allgather")))
    assert bwd == [("all_gather", 2 * N * H * EP, "ep_all_gather_combine_bwd"),
                   ("reduce_scatter", 2 * N * H * EP, "ep_reduce_scatter_dispatch_bwd"),
                   ("reduce_scatter", 2 * N * E * EP, "ep_reduce_scatter_dispatch_bwd_probs")]


def test_allgather_combine_runs_in_the_routers_type():
    ctx = _ctx("allgather", router_dtype="fp64")
    fwd, bwd = moe_forward(ctx), moe_backward(ctx)
    assert ("reduce_scatter", 8 * N * H * EP, "ep_reduce_scatter_combine") in _colls(fwd)
    assert ("all_gather", 8 * N * E * EP, "ep_all_gather_dispatch_probs") in _colls(fwd)
    assert ("all_gather", 8 * N * H * EP, "ep_all_gather_combine_bwd") in _colls(bwd)
    # the gathered outputs cast up before the reduce-scatter, the local result cast back
    assert [(o.name, o.bytes) for o in _named(fwd, "ep_cast")] == [
        ("ep_cast_combine_gathered", (2 + 8) * N * H * EP), ("ep_cast_combine_local", (2 + 8) * N * H)]
    assert [(o.name, o.bytes) for o in _named(bwd, "ep_cast")] == [
        ("ep_cast_combine_bwd_local", (2 + 8) * N * H), ("ep_cast_combine_bwd_gathered", (2 + 8) * N * H * EP)]
    # the all-to-all dispatcher's combine stays 16-bit whatever the router's type
    assert ("all_to_all", 2 * N * K * H, "ep_all_to_all_combine") in _colls(moe_forward(_ctx(router_dtype="fp64")))


def test_alltoall_regroups_the_received_tokens_by_local_expert():
    # 4 local experts: after the dispatch the n k received rows are sorted by expert (with
    # their 16-bit probabilities), before the combine sorted back; the backward does both
    sort = [(o.name, o.bytes) for o in _named(moe_forward(_ctx()), "expert_sort", "expert_unsort")]
    rows = N * K
    assert sort == [("expert_sort", 2 * 2 * rows * H + 2 * 2 * rows), ("expert_unsort", 2 * 2 * rows * H)]
    bwd = [(o.name, o.bytes) for o in _named(moe_backward(_ctx()), "expert_sort", "expert_unsort")]
    assert bwd == [("expert_unsort_bwd", 2 * 2 * rows * H), ("expert_sort_bwd", 2 * 2 * rows * H + 2 * 2 * rows)]
    # fp64 probabilities travel with the rows
    fp64 = _named(moe_forward(_ctx(router_dtype="fp64")), "expert_sort")[0]
    assert fp64.bytes == 2 * 2 * rows * H + 2 * 8 * rows
    # the all-gather dispatcher permutes once (its permute selects the local experts' rows)
    assert not _named(moe_forward(_ctx("allgather")), "expert_sort", "expert_unsort")
