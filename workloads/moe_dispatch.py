"""Token dispatch and combine of one MoE layer on one rank (workloads/moe_layers.py puts
them between the permutation and the experts): the routed copies each rank sends and
receives, and the collectives or DeepEP / HybridEP calls that carry them, with the
element types they carry (activations, FP8 with block scales, router probabilities).


Dispatchers (``workload.moe.dispatcher``), bytes per rank with e bytes per element:
- alltoall: one NCCL all-to-all over the EP group, send buffer e*n*k*h (each routed copy
  once), the same for the combine; with etp > 1 an all-gather / reduce-scatter over ETP.
- allgather: all-gather of the EP group's tokens (buffer e*n*h*ep), reduce-scatter of
  the outputs (Megatron-Core's AllGather dispatcher).
- deepep: DeepEP's kernels, one ExpertDispatch op per call (priced by
  sim/network/deepep.py). Normal kernels: a token crosses the scale-out network once per
  remote node its k distinct experts sit on, then NVLink forwards it once to each rank
  that holds one of them; the two phases are pipelined. Low-latency kernels (serving
  decode): each routed copy goes straight to its rank. ``dispatch_dtype: fp8`` sends the
  dispatch as FP8 with 1x128-block scales (1 + 4/128 bytes per element); combines stay
  16-bit.
- hybridep: HybridEP's kernels (Megatron-Core's flex dispatcher, hybridep backend): the
  same calls as deepep's normal kernels, on ``hybridep_sms`` SMs
  (``moe_hybridep_num_sms``), whose intranode rate is HybridEP's published bandwidth
  (sim/network/deepep.py).

h here is the width of the routed tokens: the hidden size, or under LatentMoE the latent
size (``moe.latent_size``: Megatron-Core projects the tokens down before the dispatcher and
back up after the combine; token_dispatcher.py sizes the HybridEP buffers to
``moe_latent_size or hidden_size``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import cache

from hw_models.topology import fabric_defaults
from workloads.graph import Collective, ExpertDispatch
from workloads.layer_attention import bf16_context
from workloads.layers import LayerContext, Op, mem
from workloads.moe import token_width


def local_tokens(ctx: LayerContext) -> int:
    return max(1, ctx.tokens // ctx.tp)


def received(ctx: LayerContext) -> float:
    """Routed token copies the slowest EP rank computes (ETP peers' included)."""
    k = ctx.model.moe.top_k
    return local_tokens(ctx) * k * ctx.moe.rank_factor * ctx.moe.etp


ROUTER_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "fp64": 8}


def router_context(ctx: LayerContext) -> LayerContext:
    """The router's GEMM context: 16-bit (FP8 training keeps the router out of Transformer
    Engine's autocast), or ``router_dtype`` (Megatron-Core ``moe_router_dtype``: router.py
    ``gating`` runs ``F.linear(input.to(dtype), weight.to(dtype))``)."""
    base, rd = bf16_context(ctx), ctx.moe.router_dtype
    if rd is None or rd == base.dtype:
        return base
    return replace(base, dtype=rd, act_bytes=ROUTER_BYTES[rd])


def router_bytes(ctx: LayerContext) -> int:
    """Bytes of a router logit / probability: the router's type (16-bit when unset)."""
    return router_context(ctx).act_bytes


# DeepEP's constants (deepseek-ai/DeepEP deep_ep/buffers/legacy.py, csrc/kernels/):
FP8_BYTES = 1 + 4 / 128     # an FP8 element and its share of its 1x128 block's fp32 scale
LL_MSG_EXTRA = 16           # low-latency kernels: an int4 of source info per message
DEEPEP_SMS = 20             # Buffer.num_sms: the SMs its normal kernels hold
DEEPEP_CHANNELS = DEEPEP_SMS // 2   # two SMs per channel (internode kernels)
DEEPEP_RDMA_CHUNK = 8       # tokens per RDMA chunk (get_dispatch_config, 24 to 64 ranks)


@cache
def ll_dispatch_sm_frac() -> float:
    """Share of a low-latency dispatch's time its send and receive phases hold every SM
    (catalog ``deepep_ll_dispatch_sm_frac``, hw_models/data/fabric.yaml)."""
    return fabric_defaults()["deepep_ll_dispatch_sm_frac"]


def _missed(pool: int, held: int, k: int) -> float:
    """Chance that k distinct experts drawn from ``pool`` miss the ``held`` of one place."""
    p = 1.0
    for i in range(k):
        p *= max(0.0, (pool - held - i) / (pool - i)) if pool > i else 0.0
    return p


def _spread(ctx: LayerContext) -> tuple[int, int, int, int]:
    """(places a token's experts can sit on, experts each holds, nodes they are on, k):
    nodes or ranks of the EP group, or under node-limited routing whose groups are the
    nodes (DeepSeek-V3: 8 groups, top-4, "at most 4 nodes per token") the M chosen ones."""
    moe, mc = ctx.model.moe, ctx.moe
    nodes, k, m = mc.rail_group.size, moe.top_k, moe.router_group_topk
    limited = bool(m) and nodes > 1 and moe.router_groups == nodes
    return (m if limited else nodes), moe.experts // nodes, nodes, k


def deepep_remote_nodes(ctx: LayerContext) -> float:
    """Expected remote nodes a token's k distinct experts sit on, the E experts spread
    evenly over the N nodes of the EP group: N (1 - C(E - E/N, k) / C(E, k)) nodes, of
    which (N-1)/N remote; under node-limited routing the k experts are drawn from the M
    chosen nodes' M E/N experts."""
    places, per_node, nodes, k = _spread(ctx)
    return places * (1 - _missed(places * per_node, per_node, k)) * (nodes - 1) / nodes


def deepep_ranks_per_token(ctx: LayerContext) -> float:
    """Expected distinct EP ranks a token's k distinct experts sit on (DeepEP sends a token
    once to each): R (1 - C(A - E/ep, k) / C(A, k)) over the R ranks its experts can be on
    (the M chosen nodes' ranks under node-limited routing, else the whole group) holding
    A of the experts."""
    places, per_node, nodes, k = _spread(ctx)
    per_rank = ctx.model.moe.experts // ctx.moe.ep
    ranks = places * per_node // per_rank if nodes > 1 else ctx.moe.ep
    return ranks * (1 - _missed(ranks * per_rank, per_rank, k))


def element_bytes(ctx: LayerContext, out: bool) -> float:
    """Bytes per hidden element on the wire: an FP8 dispatch (``dispatch_dtype: fp8``)
    carries one byte and its share of a 1x128 block's scale; combines stay 16-bit."""
    return FP8_BYTES if not out and ctx.moe.dispatch_dtype == "fp8" else ctx.act_bytes


def deepep_call(ctx: LayerContext, name: str, out: bool) -> Collective:
    """One DeepEP call (workloads.graph.ExpertDispatch), normal or low-latency kernels, or
    one HybridEP call (``dispatcher: hybridep``: DeepEP's normal-kernel shape on its own SMs,
    priced at its published intranode rate)."""
    mc, h = ctx.moe, token_width(ctx.model)
    if mc.dispatcher == "hybridep":
        op = deepep_call(replace(ctx, moe=replace(mc, dispatcher="deepep", low_latency=False)), name, out)
        return replace(op, name=op.name.replace("deepep_", "hybridep_", 1), sms=mc.hybridep_sms,
                       hybridep=True, combine=out)
    n, k, e = local_tokens(ctx), ctx.model.moe.top_k, element_bytes(ctx, out)
    local = mc.node_group.size
    # The kernels move every copy a GPU receives through the same buffers, its own included
    # (DeepEP counts them all as NVLink traffic; tests/legacy/test_*.py).
    if mc.low_latency:                  # every routed copy straight to its rank
        copy = e * h + (0 if out else LL_MSG_EXTRA)
        total = n * k * mc.rank_factor * copy
        return ExpertDispatch("all_to_all", total, mc.ep_group, name=f"deepep_ll_{name}",
                              nvl_bytes=total * local / mc.ep, low_latency=True,
                              sm_frac=0.0 if out else ll_dispatch_sm_frac())
    nvl = e * n * h * deepep_ranks_per_token(ctx) * mc.rank_factor
    nodes = mc.rail_group.size
    if nodes == 1:
        return ExpertDispatch("all_to_all", 0.0, mc.node_group, name=f"deepep_nvlink_{name}",
                              nvl_bytes=nvl, sms=DEEPEP_SMS)
    remote = deepep_remote_nodes(ctx)
    chunks = math.ceil(n * remote * nodes / (nodes - 1) / (DEEPEP_CHANNELS * DEEPEP_RDMA_CHUNK))
    return ExpertDispatch("all_to_all", e * n * h * remote * mc.rank_factor * nodes / (nodes - 1),
                          mc.rail_group, name=f"deepep_{name}", nvl_bytes=nvl, chunks=chunks,
                          sms=DEEPEP_SMS)


def route(ctx: LayerContext, name: str, out: bool) -> list[Op]:
    """Dispatch (out=False) or combine (out=True) communication of one MoE layer."""
    mc, h = ctx.moe, token_width(ctx.model)
    n, k, e = local_tokens(ctx), ctx.model.moe.top_k, element_bytes(ctx, out)
    if mc.ep * mc.etp == 1:
        return []
    ops: list[Op] = []
    if mc.dispatcher == "allgather":
        return _allgather(ctx, name, out)
    if mc.dispatcher in ("deepep", "hybridep") and mc.ep > 1:
        ops = [deepep_call(ctx, name, out)]
    elif mc.ep > 1:
        ops = [Collective("all_to_all", e * n * k * h * mc.rank_factor, mc.ep_group,
                          name=f"ep_all_to_all_{name}")]
    if mc.etp > 1:
        etp_op = Collective("reduce_scatter" if out else "all_gather",
                            ctx.act_bytes * received(ctx) * h, mc.etp_group, name=f"etp_{name}")
        ops = [*ops, etp_op]             # dispatch order; the combine runs it backwards
    return ops[::-1] if out else ops


def _allgather(ctx: LayerContext, name: str, out: bool) -> list[Op]:
    """Megatron-Core's AllGather dispatcher (token_dispatcher.py, MoEAllGatherTokenDispatcher,
    Megatron-LM 76065f17 / d30c3ae5): the dispatch all-gathers the EP group's tokens, its
    routing map (bool, n x E) and its probabilities (n x E in the router's type); the combine
    reduce-scatters the expert outputs cast to the probabilities' type
    (``hidden_states.to(self.local_probs.dtype)``) and casts the result back. With a wider
    router (``router_dtype: fp64``) the combine and its backward all-gather move 8 bytes per
    element and the casts read and write both types. ``out``: the reduce-scatter direction
    (the combine, or the dispatch's backward)."""
    mc, h, E = ctx.moe, token_width(ctx.model), ctx.model.moe.experts
    n, e = local_tokens(ctx), element_bytes(ctx, out)
    kind = "reduce_scatter" if out else "all_gather"
    if not name.startswith("combine"):
        pb = router_bytes(ctx)
        ops: list[Op] = [Collective(kind, e * n * h * mc.ep, mc.ep_group, name=f"ep_{kind}_{name}"),
                         Collective(kind, pb * n * E * mc.ep, mc.ep_group, name=f"ep_{kind}_{name}_probs")]
        if not out:                       # the routing map has no gradient
            ops.append(Collective(kind, n * E * mc.ep, mc.ep_group, name=f"ep_{kind}_{name}_map"))
        return ops
    a, w = ctx.act_bytes, max(ctx.act_bytes, router_bytes(ctx))
    wire = Collective(kind, w * n * h * mc.ep, mc.ep_group, name=f"ep_{kind}_{name}")
    if w == a:
        return [wire]
    wide = mem(ctx, "elementwise", (a + w) * n * h * mc.ep, f"ep_cast_{name}_gathered")
    local = mem(ctx, "elementwise", (a + w) * n * h, f"ep_cast_{name}_local")
    return [wide, wire, local] if out else [local, wire, wide]
