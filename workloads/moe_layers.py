"""Kernels of one layer of a non-uniform model (MoE, MLA, windowed attention) on one rank.

Attention (MLA, windowed): workloads/layer_attention.py.

MoE layer, tokens n = T/tp per rank (MoE layers run sequence-parallel, as Megatron-Core
requires with tp > 1, so no TP collective surrounds them):
router GEMM (n, E, h) and top-k; permute (gather the n*k routed copies); dispatch to the
EP ranks that own the experts; grouped expert GEMMs over the E/ep local experts, whose
shapes follow the tokens each expert receives (one GEMM per local expert, as Transformer
Engine's GroupedLinear issues them: each pays its own launch, fixed cost and wave
quantization); combine back; unpermute (weighted sum);
shared experts on the n local tokens. The slowest EP rank sets the pace: it receives
``rank_factor`` x n*k tokens (workloads/moe_load.py), so its GEMMs and its all-to-all
are that much larger, and everyone waits at the combine.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cache

from hw_models.topology import fabric_defaults
from workloads.graph import Collective, CommGroup, ExpertDispatch
from workloads.host_launch import host_sync
from workloads.layer_attention import attn_backward, attn_forward, bf16_context
from workloads.layers import (
    LayerContext,
    Op,
    gemm,
    gemm_bwd,
    layer_gemm_shapes,
    mem,
    tp_comm,
)
from workloads.moe import is_moe_layer, is_window_layer
from workloads.moe_launches import (
    TE_CHUNK_SORT_KERNELS,
    TE_PERMUTE_KERNELS,
    count_kernels,
    router_kernels,
)


@dataclass(frozen=True)
class MoEContext:
    ep_group: CommGroup
    etp_group: CommGroup
    dispatcher: str = "alltoall"
    rank_factor: float = 1.0          # slowest EP rank's routed tokens / balanced
    node_group: CommGroup | None = None   # deepep: the EP group's ranks in one scale-up domain
    rail_group: CommGroup | None = None   # deepep: one EP rank per domain (same local index)
    dispatch_dtype: str = "bf16"      # what the dispatch carries: bf16, or fp8 with 1x128 scales
    low_latency: bool = False         # deepep: the low-latency kernels (decode) instead of normal
    fused_mlp: bool = False           # TE's fused grouped MLP: no separate bias kernels
    router_dtype: str | None = None   # moe_router_dtype: router GEMM, scores, probs (None: 16-bit)
    freeze_router: bool = False       # router weights frozen: no weight-gradient GEMM
    permute_fusion: bool = True       # TE's fused permute / unpermute (moe_permute_fusion)
    router_fusion: bool = False       # TE's fused router kernels (moe_router_fusion)
    aux_loss: bool = False            # load-balancing loss computed (moe_aux_loss_coeff > 0)
    hybridep_sms: int = 16            # hybridep: moe_hybridep_num_sms (Megatron-Core default 16)

    @property
    def ep(self) -> int:
        return self.ep_group.size

    @property
    def etp(self) -> int:
        return self.etp_group.size


def make_context(ep_ranks: tuple[int, ...], etp_ranks: tuple[int, ...], dispatcher: str,
                 rank_factor: float, domain_gpus: int, dispatch_dtype: str = "bf16",
                 fused_mlp: bool = False, router_dtype: str | None = None,
                 freeze_router: bool = False, permute_fusion: bool = True,
                 router_fusion: bool = False, aux_loss: bool = False,
                 hybridep_sms: int = 16) -> MoEContext:
    """Groups of the first EP rank; ``domain_gpus`` consecutive ranks share NVLink."""
    first = ep_ranks[0] // domain_gpus
    node = tuple(r for r in ep_ranks if r // domain_gpus == first)
    seen, rail = set(), []
    for r in ep_ranks:
        if r // domain_gpus not in seen:
            seen.add(r // domain_gpus)
            rail.append(r)
    return MoEContext(CommGroup(ep_ranks, "ep"), CommGroup(etp_ranks, "ep"), dispatcher,
                      rank_factor, CommGroup(node, "ep"), CommGroup(tuple(rail), "ep"),
                      dispatch_dtype, fused_mlp=fused_mlp, router_dtype=router_dtype,
                      freeze_router=freeze_router, permute_fusion=permute_fusion,
                      router_fusion=router_fusion, aux_loss=aux_loss, hybridep_sms=hybridep_sms)


def _enter_tp(ctx: LayerContext, name: str) -> list[Op]:
    """Megatron's conjugate f: identity, or an all-gather with sequence parallelism."""
    return tp_comm(ctx, "all_gather", name) if ctx.sp else []


def _exit_tp(ctx: LayerContext, name: str) -> list[Op]:
    """Megatron's conjugate g: all-reduce, or a reduce-scatter with sequence parallelism."""
    return tp_comm(ctx, "reduce_scatter" if ctx.sp else "all_reduce", name)


def _enter_tp_bwd(ctx: LayerContext, name: str) -> list[Op]:
    return _exit_tp(ctx, name)


def _exit_tp_bwd(ctx: LayerContext, name: str) -> list[Op]:
    return _enter_tp(ctx, name)


def _kind(ctx: LayerContext, i: int) -> tuple[bool, bool]:
    return is_moe_layer(ctx.model, i), is_window_layer(ctx.model, i)


# ------------------------------------------------------------------------- MoE block

def local_tokens(ctx: LayerContext) -> int:
    return max(1, ctx.tokens // ctx.tp)


def _received(ctx: LayerContext) -> float:
    """Routed token copies the slowest EP rank computes (ETP peers' included)."""
    k = ctx.model.moe.top_k
    return local_tokens(ctx) * k * ctx.moe.rank_factor * ctx.moe.etp


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
    mc, h = ctx.moe, ctx.model.hidden
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
    mc, h = ctx.moe, ctx.model.hidden
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
                            ctx.act_bytes * _received(ctx) * h, mc.etp_group, name=f"etp_{name}")
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
    mc, h, E = ctx.moe, ctx.model.hidden, ctx.model.moe.experts
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


def _expert_shapes(ctx: LayerContext) -> tuple[int, tuple, tuple]:
    """(local experts, fc1 (m, n, k), fc2 (m, n, k)) with m the tokens per local expert."""
    m, mc = ctx.model, ctx.moe
    local = m.moe.experts // mc.ep
    f = m.moe.expert_ffn_hidden // mc.etp
    per = max(1, round(_received(ctx) / local))
    up = f * (2 if m.gated else 1)
    return local, (per, up, m.hidden), (per, m.hidden, f)


def _shared_shapes(ctx: LayerContext) -> tuple[tuple, tuple]:
    m, n = ctx.model, local_tokens(ctx)
    f = m.moe.shared_experts * m.moe.shared_ffn
    return (n, f * (2 if m.gated else 1), m.hidden), (n, m.hidden, f)


def _act(ctx: LayerContext, tokens: float, f: int) -> float:
    return (3 if ctx.model.gated else 2) * ctx.act_bytes * tokens * f


def _expert_bias(ctx: LayerContext, bwd: bool) -> list[Op]:
    """The experts' fc2 bias, weighted by each token's routing probability, added after the
    grouped GEMM in PyTorch (Megatron-Core TEGroupedMLP._apply_bias, core 0.15-0.18: fc2
    has skip_bias_add, and per local expert ``t + b * p`` over its split of the rows, then
    ``torch.cat``); Transformer Engine's fused grouped MLP (``fused_mlp``) adds it inside.
    With r routed rows of h elements of e bytes: forward, per expert b*p (write e r_i h)
    and t + (read 2, write 1), then the concatenation (read 1, write 1), 6 e r h in all;
    backward, per expert the gradients of b (sum over rows of grad x p) and of p (sum over
    h of grad x b), each an elementwise product (read 1, write 1) and its reduction
    (read 1): 6 e r h."""
    if not ctx.model.bias or ctx.moe.fused_mlp:
        return []
    local, _, fc2 = _expert_shapes(ctx)
    row = ctx.act_bytes * _received(ctx) * fc2[1] / local
    if bwd:
        return [mem(ctx, "elementwise", 3 * row, "expert_bias_grad"),
                mem(ctx, "elementwise", 3 * row, "expert_prob_grad")] * local
    return [*[mem(ctx, "elementwise", 4 * row, "expert_bias")] * local,
            mem(ctx, "elementwise", 2 * row * local, "expert_bias_cat")]


def _expert_clamp(ctx: LayerContext, bwd: bool) -> list[Op]:
    """The clamp of a clamped gated activation (``activation_clamp``: gpt-oss), run in
    PyTorch before Megatron-Core's fused kernel (``weighted_bias_quick_geglu_impl`` in
    megatron/core/fusions/fused_bias_geglu.py, core 0.15-0.18: ``chunk`` of the fc1 output
    into its gate and linear halves, ``clamp(max=limit)`` and ``clamp(-limit, limit)``,
    ``torch.cat`` back), then ``torch.tensor(linear_offset, device=...)``, a copy from the
    host that PyTorch runs as ``cudaMemcpyAsync`` followed by ``cudaStreamSynchronize``
    (``memcpy_and_sync``, aten/src/ATen/native/cuda/Copy.cu, non-blocking false): a
    host-device synchronization on every call. With r routed rows, f the expert
    intermediate size and e bytes per element: forward, the two clamps (read and write
    half each) and the concatenation (read and write all), 8 e r f bytes in 3 kernels;
    backward (PyTorch's ``clamp_backward``: ``where(x <= max, grad, 0)`` for the gate half,
    ``where((x >= min).logical_and_(x <= max), grad, 0)`` for the linear half, masks of one
    byte, each ``where`` with its zero scalar filled on the device; the chunk's gradient
    concatenated by ``split_backward``): (11 e + 8) r f bytes in 9 kernels. Transformer
    Engine's fused grouped MLP (``fused_mlp``) clamps inside its kernels: none of this."""
    limit = ctx.model.activation_clamp
    if limit is None or ctx.moe.fused_mlp or not ctx.model.gated:
        return []
    e, rf = ctx.act_bytes, _received(ctx) * _expert_shapes(ctx)[2][2]
    if bwd:
        return [replace(mem(ctx, "elementwise", (11 * e + 8) * rf, "expert_clamp_bwd"), host_ops=9)]
    return [mem(ctx, "elementwise", 2 * e * rf, "expert_clamp_gate"),
            mem(ctx, "elementwise", 2 * e * rf, "expert_clamp_linear"),
            mem(ctx, "elementwise", 4 * e * rf, "expert_clamp_cat"),
            mem(ctx, "elementwise", e, "expert_act_offset_h2d"), host_sync()]


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


def router_launches(ctx: LayerContext, bwd: bool) -> int:
    """Kernels the host issues for the router's scoring after its GEMM (the ``router_topk``
    op), forward or backward: workloads/moe_launches.router_kernels with this router's
    options and whether its logits are fp32."""
    mc = ctx.moe
    return router_kernels(mc.router_fusion, mc.aux_loss, router_bytes(ctx) != 4, bwd)


def _router_forward(ctx: LayerContext) -> list[Op]:
    """Router GEMM and top-k. A router wider than the activations first casts its input
    (n x h) and weight (E x h) to its type (read 16-bit, write wide); the softmax and top-k
    read and write its logits at ``router_bytes`` (at least fp32: Megatron-Core's softmax
    runs in fp32)."""
    m, n = ctx.model, local_tokens(ctx)
    h, E = m.hidden, m.moe.experts
    rc = router_context(ctx)
    ops: list[Op] = []
    if rc.act_bytes != ctx.act_bytes:
        ops.append(mem(ctx, "elementwise", (ctx.act_bytes + rc.act_bytes) * (n + E) * h, "router_cast"))
    topk = mem(ctx, "softmax", 3 * max(4, rc.act_bytes) * n * E, "router_topk")
    return [*ops, gemm(rc, n, E, h, "router"), replace(topk, host_ops=router_launches(ctx, False))]


def _router_backward(ctx: LayerContext) -> list[Op]:
    """Top-k backward, the router's input gradient (its type), its weight gradient unless
    frozen (``freeze_router``: NeMo RL sets ``requires_grad = False`` on the router weight,
    so autograd skips that GEMM), and the input gradient cast back to 16-bit."""
    m, n = ctx.model, local_tokens(ctx)
    h, E = m.hidden, m.moe.experts
    rc = router_context(ctx)
    dgrad, wgrad = gemm_bwd(rc, n, E, h, "router")
    topk = mem(ctx, "softmax", 3 * max(4, rc.act_bytes) * n * E, "router_topk_bwd")
    ops: list[Op] = [replace(topk, host_ops=router_launches(ctx, True)), dgrad]
    if not ctx.moe.freeze_router:
        ops.append(wgrad)
    if rc.act_bytes != ctx.act_bytes:
        ops.append(mem(ctx, "elementwise", (ctx.act_bytes + rc.act_bytes) * n * h, "router_cast_bwd"))
    return ops


def _count_ops(ctx: LayerContext) -> int:
    """Host ops of the all-to-all dispatcher's count bookkeeping before the permutation
    (workloads/moe_launches.count_kernels)."""
    mc = ctx.moe
    if mc.dispatcher != "alltoall" or mc.ep * mc.etp * ctx.tp == 1:
        return 0
    return count_kernels(ctx.model.moe.experts // mc.ep, mc.permute_fusion)


def _permute(ctx: LayerContext) -> list[Op]:
    """Token permutation before the dispatch: Transformer Engine's fused kernel (read each
    token once, write its k copies), or without ``permute_fusion`` Megatron-Core's PyTorch
    path (moe_utils.permute, Megatron-LM 76065f17): the routing map transposed
    (``routing_map.bool().T.contiguous()``), ``masked_select`` of the token indices and of the
    transposed probabilities (each a ``nonzero`` whose count the host reads: a
    synchronization), then ``index_select`` of the n k rows (read and write each copy). The
    all-gather dispatcher permutes without the probabilities but always selects them with
    ``masked_select`` after it (dispatch_postprocess)."""
    m, e, n = ctx.model, ctx.act_bytes, local_tokens(ctx)
    h, E, k = m.hidden, m.moe.experts, m.moe.top_k
    pb, copies = router_bytes(ctx), n * k
    probs_select = [mem(ctx, "elementwise", 2 * pb * n * E + n * E + 2 * pb * copies, "permute_probs"),
                    host_sync()]
    gather = ctx.moe.dispatcher == "allgather"
    counts = _count_ops(ctx)
    if ctx.moe.permute_fusion:
        fused = mem(ctx, "elementwise", e * n * h * (1 + k), "permute")
        return [replace(fused, host_ops=counts + TE_PERMUTE_KERNELS), *(probs_select if gather else [])]
    return [replace(mem(ctx, "elementwise", 2 * n * E, "permute_map"), host_ops=counts + 1),
            mem(ctx, "elementwise", n * E + 2 * 8 * copies, "permute_indices"), host_sync(),
            *([] if gather else probs_select),
            mem(ctx, "elementwise", 2 * e * copies * h, "permute"), *(probs_select if gather else [])]


def _unpermute(ctx: LayerContext) -> list[Op]:
    """Fused: read the k copies, write each token once. Unfused (moe_utils.unpermute): a
    zeroed output, then ``scatter_add_`` of the copies into it (read each copy, read and
    write the output)."""
    m, e, n = ctx.model, ctx.act_bytes, local_tokens(ctx)
    h, k = m.hidden, m.moe.top_k
    if ctx.moe.permute_fusion:
        return [mem(ctx, "elementwise", e * n * h * (1 + k), "unpermute")]
    return [mem(ctx, "elementwise", e * n * h, "unpermute_zeros"),
            mem(ctx, "elementwise", e * n * h * (k + 2), "unpermute")]


def _unpermute_backward(ctx: LayerContext) -> list[Op]:
    """Fused: TE's kernel. Unfused: ``scatter_add_``'s backward gathers the output gradient
    into the k copies (read and write each copy)."""
    m, e, n = ctx.model, ctx.act_bytes, local_tokens(ctx)
    h, k = m.hidden, m.moe.top_k
    nbytes = e * n * h * (2 + k) if ctx.moe.permute_fusion else 2 * e * n * k * h
    return [mem(ctx, "elementwise", nbytes, "unpermute_bwd")]


def _permute_backward(ctx: LayerContext) -> list[Op]:
    """Fused: TE's kernel. Unfused: ``index_select``'s backward zeroes the input gradient and
    adds the k copies into it (``index_add_``: read each copy, read and write the output);
    the probabilities' ``masked_select`` backward scatters their gradient into a zeroed
    n x E tensor and transposes it back."""
    m, e, n = ctx.model, ctx.act_bytes, local_tokens(ctx)
    h, E, k = m.hidden, m.moe.experts, m.moe.top_k
    if ctx.moe.permute_fusion:
        return [mem(ctx, "elementwise", e * n * h * (1 + k), "permute_bwd")]
    pb = router_bytes(ctx)
    return [mem(ctx, "elementwise", e * n * h, "permute_bwd_zeros"),
            mem(ctx, "elementwise", e * n * h * (k + 2), "permute_bwd"),
            mem(ctx, "elementwise", 3 * pb * n * E + pb * n * k, "permute_probs_bwd")]


def _sort_chunks(ctx: LayerContext, name: str, probs: bool) -> list[Op]:
    """The all-to-all dispatcher's second permutation (token_dispatcher.py,
    MoEAlltoAllTokenDispatcher, ``sort_chunks_by_idxs``): the received tokens arrive grouped
    by source rank and are regrouped by local expert after the dispatch (with their
    probabilities), and back before the combine; each is one pass that reads and writes the
    r received rows (TE's fused kernel, or ``torch.split`` and ``torch.cat`` without
    ``permute_fusion``: the same bytes). Only with more than one local expert."""
    mc = ctx.moe
    local = ctx.model.moe.experts // mc.ep
    if mc.dispatcher != "alltoall" or local < 2 or mc.ep * mc.etp == 1:
        return []
    r = _received(ctx)
    nbytes = 2 * ctx.act_bytes * r * ctx.model.hidden + (2 * router_bytes(ctx) * r if probs else 0)
    if mc.permute_fusion:
        kernels = 1 if name.endswith("_bwd") else TE_CHUNK_SORT_KERNELS
    else:                               # torch.cat of the split tokens (and probabilities)
        kernels = 1 + int(probs)
    return [replace(mem(ctx, "elementwise", nbytes, name), host_ops=kernels)]


def moe_forward(ctx: LayerContext) -> list[Op]:
    m, n = ctx.model, local_tokens(ctx)
    local, fc1, fc2 = _expert_shapes(ctx)
    r = _received(ctx)
    ops: list[Op] = [*_router_forward(ctx), *_permute(ctx),
                     host_sync(),    # dropless: tokens per expert read on the host
                     *route(ctx, "dispatch", out=False), *_sort_chunks(ctx, "expert_sort", True),
                     *[gemm(ctx, *fc1, "expert_fc1")] * local, *_expert_clamp(ctx, bwd=False),
                     mem(ctx, "elementwise", _act(ctx, r, fc2[2]), "expert_activation"),
                     *[gemm(ctx, *fc2, "expert_fc2")] * local, *_expert_bias(ctx, bwd=False),
                     *_sort_chunks(ctx, "expert_unsort", False),
                     *route(ctx, "combine", out=True), *_unpermute(ctx)]
    if m.moe.shared_experts:
        s1, s2 = _shared_shapes(ctx)
        ops += [gemm(ctx, *s1, "shared_fc1"), mem(ctx, "elementwise", _act(ctx, n, s2[2]), "shared_activation"),
                gemm(ctx, *s2, "shared_fc2")]
    return ops


def moe_backward(ctx: LayerContext) -> list[Op]:
    m, n = ctx.model, local_tokens(ctx)
    local, fc1, fc2 = _expert_shapes(ctx)
    r = _received(ctx)
    ops: list[Op] = []
    if m.moe.shared_experts:
        s1, s2 = _shared_shapes(ctx)
        ops += [*gemm_bwd(ctx, *s2, "shared_fc2"),
                mem(ctx, "elementwise", 1.5 * _act(ctx, n, s2[2]), "shared_activation_bwd"),
                *gemm_bwd(ctx, *s1, "shared_fc1")]
    ops += [*_unpermute_backward(ctx),
            *route(ctx, "combine_bwd", out=False), *_sort_chunks(ctx, "expert_unsort_bwd", False),
            *_expert_bias(ctx, bwd=True),
            *gemm_bwd(ctx, *fc2, "expert_fc2") * local,
            mem(ctx, "elementwise", 1.5 * _act(ctx, r, fc2[2]), "expert_activation_bwd"),
            *_expert_clamp(ctx, bwd=True),
            *gemm_bwd(ctx, *fc1, "expert_fc1") * local, *_sort_chunks(ctx, "expert_sort_bwd", True),
            *route(ctx, "dispatch_bwd", out=True),
            *_permute_backward(ctx), *_router_backward(ctx)]
    return ops


# ------------------------------------------------------------------------- whole layers

def _dense_mlp(ctx: LayerContext) -> list[Op]:
    g = layer_gemm_shapes(ctx)
    return [*_enter_tp(ctx, "tp_ag_mlp"), gemm(ctx, *g["mlp_up"], "mlp_up"),
            mem(ctx, "elementwise", _act(ctx, ctx.tokens, ctx.model.ffn // ctx.tp), "activation"),
            gemm(ctx, *g["mlp_down"], "mlp_down"), *_exit_tp(ctx, "tp_mlp_out")]


def _dense_mlp_bwd(ctx: LayerContext) -> list[Op]:
    g = layer_gemm_shapes(ctx)
    return [*_exit_tp_bwd(ctx, "tp_mlp_out_bwd"), *gemm_bwd(ctx, *g["mlp_down"], "mlp_down"),
            mem(ctx, "elementwise", 1.5 * _act(ctx, ctx.tokens, ctx.model.ffn // ctx.tp), "activation_bwd"),
            *gemm_bwd(ctx, *g["mlp_up"], "mlp_up"), *_enter_tp_bwd(ctx, "tp_mlp_in_bwd")]


def layer_forward_at(ctx: LayerContext, i: int) -> list[Op]:
    """Forward kernels of layer ``i``."""
    moe, window = _kind(ctx, i)
    e, Tn, h = ctx.act_bytes, ctx.norm_tokens, ctx.model.hidden
    norm, dropout_add = 2 * e * Tn * h, (3 * e + 1) * Tn * h
    return [mem(ctx, "norm", norm, "input_norm"), *_enter_tp(ctx, "tp_ag_attn"),
            *attn_forward(ctx, window), *_exit_tp(ctx, "tp_attn_out"),
            mem(ctx, "elementwise", dropout_add, "bias_dropout_add"),
            mem(ctx, "norm", norm, "post_attn_norm"),
            *(moe_forward(ctx) if moe else _dense_mlp(ctx)),
            mem(ctx, "elementwise", dropout_add, "bias_dropout_add")]


def layer_backward_at(ctx: LayerContext, i: int) -> list[Op]:
    moe, window = _kind(ctx, i)
    e, Tn, h = ctx.act_bytes, ctx.norm_tokens, ctx.model.hidden
    norm_bwd, dropout_bwd = 3 * e * Tn * h, (2 * e + 1) * Tn * h
    return [mem(ctx, "elementwise", dropout_bwd, "dropout_add_bwd"),
            *(moe_backward(ctx) if moe else _dense_mlp_bwd(ctx)),
            mem(ctx, "norm", norm_bwd, "post_attn_norm_bwd"),
            mem(ctx, "elementwise", dropout_bwd, "dropout_add_bwd"), *_exit_tp_bwd(ctx, "tp_attn_out_bwd"),
            *attn_backward(ctx, window), *_enter_tp_bwd(ctx, "tp_attn_in_bwd"),
            mem(ctx, "norm", norm_bwd, "input_norm_bwd")]


def layer_recompute_at(ctx: LayerContext, i: int, mode: str) -> list[Op]:
    """Full recompute re-runs the forward; selective recomputes the attention core, which
    the fused kernels used here already do in their backward (no extra cost).
    ``norm_moe_act`` (Megatron-Core's recompute_modules [layernorm, moe_act],
    megatron/core/transformer/transformer_layer.py and moe/experts.py: the input and
    pre-MLP norms and the routed experts' activation re-run before the backward needs
    their outputs) re-runs those kernels as the forward costs them."""
    if mode == "full":
        return layer_forward_at(ctx, i)
    if mode != "norm_moe_act":
        return []
    norm = 2 * ctx.act_bytes * ctx.norm_tokens * ctx.model.hidden
    ops = [mem(ctx, "norm", norm, "input_norm"), mem(ctx, "norm", norm, "post_attn_norm")]
    if is_moe_layer(ctx.model, i):
        ops += [*_expert_clamp(ctx, bwd=False),
                mem(ctx, "elementwise", _act(ctx, _received(ctx), _expert_shapes(ctx)[2][2]),
                    "expert_activation")]
    return ops


def mtp_forward(ctx: LayerContext, last: int) -> list[Op]:
    """One MTP module before the shared head: two norms, the (2h -> h) projection over
    TP, one layer like the model's last (DeepSeek-V3 section 2.2)."""
    e, Tn, T, h = ctx.act_bytes, ctx.norm_tokens, ctx.tokens, ctx.model.hidden
    return [mem(ctx, "norm", 4 * e * Tn * h, "mtp_norms"), *_enter_tp(ctx, "tp_ag_mtp"),
            gemm(ctx, T, h // ctx.tp, 2 * h, "mtp_eh_proj"), *_exit_tp(ctx, "tp_mtp_out"),
            *layer_forward_at(ctx, last)]


def mtp_backward(ctx: LayerContext, last: int) -> list[Op]:
    e, Tn, T, h = ctx.act_bytes, ctx.norm_tokens, ctx.tokens, ctx.model.hidden
    return [*layer_backward_at(ctx, last), *_exit_tp_bwd(ctx, "tp_mtp_out_bwd"),
            *gemm_bwd(ctx, T, h // ctx.tp, 2 * h, "mtp_eh_proj"), *_enter_tp_bwd(ctx, "tp_mtp_in_bwd"),
            mem(ctx, "norm", 6 * e * Tn * h, "mtp_norms_bwd")]
