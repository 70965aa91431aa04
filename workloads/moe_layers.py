"""Kernels of one layer of a non-uniform model (MoE, MLA, windowed attention) on one rank.

Attention (MLA, windowed): workloads/layer_attention.py.

MoE layer, tokens n = T/tp per rank (MoE layers run sequence-parallel, as Megatron-Core
requires with tp > 1, so no TP collective surrounds them):
router GEMM (n, E, h) and top-k; permute (gather the n*k routed copies); dispatch to the
EP ranks that own the experts; grouped expert GEMMs over the E/ep local experts, whose
shapes follow the tokens each expert receives (one GEMM per local expert, as Transformer
Engine's GroupedLinear issues them: each pays its own launch, fixed cost and wave
quantization); combine back; unpermute (weighted sum);
shared experts on the n local tokens. Under LatentMoE (``moe.latent_size`` l,
Megatron-Core moe_layer.py: ``fc1_latent_proj`` in ``preprocess`` before the dispatcher,
``fc2_latent_proj`` in ``postprocess`` after the combine) the router and the shared experts
read the hidden state while a GEMM (n, l, h) projects the tokens down before the
permutation and one (n, h, l) back up after the unpermutation: permute, dispatch, the expert
GEMMs (l -> f -> l), combine and unpermute all move l-wide tokens; the projections are
``parallel_mode="duplicated"`` (whole weights on every TP rank, on its n sequence-parallel
tokens). The slowest EP rank sets the pace: it receives
``rank_factor`` x n*k tokens (workloads/moe_load.py), so its GEMMs and its all-to-all
are that much larger, and everyone waits at the combine.

Dispatch and combine (dispatchers alltoall, allgather, deepep, hybridep):
workloads/moe_dispatch.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from workloads import layer_dsv4
from workloads import mamba as mamba_spec
from workloads.dsv4 import dsv4, ratio
from workloads.graph import CommGroup
from workloads.host_launch import ep_sync, host_sync
from workloads.layer_attention import (
    attn_backward,
    attn_forward,
    fused_attention,
    mla_up_proj_recompute,
)
from workloads.layer_mamba import mamba_backward, mamba_forward
from workloads.layers import (
    LayerContext,
    Op,
    enter_tp,
    enter_tp_bwd,
    exit_tp,
    exit_tp_bwd,
    gemm,
    gemm_bwd,
    layer_gemm_shapes,
    mem,
)
from workloads.moe import is_moe_layer, is_window_layer, mla, mtp_layer_ids, token_width
from workloads.moe_dispatch import local_tokens, received, route, router_bytes, router_context
from workloads.moe_experts import (
    activation_bytes,
    expert_bias,
    expert_clamp,
    expert_shapes,
    shared_backward,
    shared_forward,
)
from workloads.moe_launches import (
    TE_CHUNK_SORT_KERNELS,
    TE_PERMUTE_KERNELS,
    count_kernels,
    router_kernels,
)
from workloads.parallel import recompute_modules


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


def _kind(ctx: LayerContext, i: int) -> tuple[bool, bool]:
    return is_moe_layer(ctx.model, i), is_window_layer(ctx.model, i)


# ------------------------------------------------------------------------- MoE block

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
    h, E, k = token_width(m), m.moe.experts, m.moe.top_k
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
    h, k = token_width(m), m.moe.top_k
    if ctx.moe.permute_fusion:
        return [mem(ctx, "elementwise", e * n * h * (1 + k), "unpermute")]
    return [mem(ctx, "elementwise", e * n * h, "unpermute_zeros"),
            mem(ctx, "elementwise", e * n * h * (k + 2), "unpermute")]


def _unpermute_backward(ctx: LayerContext) -> list[Op]:
    """Fused: TE's kernel. Unfused: ``scatter_add_``'s backward gathers the output gradient
    into the k copies (read and write each copy)."""
    m, e, n = ctx.model, ctx.act_bytes, local_tokens(ctx)
    h, k = token_width(m), m.moe.top_k
    nbytes = e * n * h * (2 + k) if ctx.moe.permute_fusion else 2 * e * n * k * h
    return [mem(ctx, "elementwise", nbytes, "unpermute_bwd")]


def _permute_backward(ctx: LayerContext) -> list[Op]:
    """Fused: TE's kernel. Unfused: ``index_select``'s backward zeroes the input gradient and
    adds the k copies into it (``index_add_``: read each copy, read and write the output);
    the probabilities' ``masked_select`` backward scatters their gradient into a zeroed
    n x E tensor and transposes it back."""
    m, e, n = ctx.model, ctx.act_bytes, local_tokens(ctx)
    h, E, k = token_width(m), m.moe.experts, m.moe.top_k
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
    r = received(ctx)
    nbytes = 2 * ctx.act_bytes * r * token_width(ctx.model) + (2 * router_bytes(ctx) * r if probs else 0)
    if mc.permute_fusion:
        kernels = 1 if name.endswith("_bwd") else TE_CHUNK_SORT_KERNELS
    else:                               # torch.cat of the split tokens (and probabilities)
        kernels = 1 + int(probs)
    return [replace(mem(ctx, "elementwise", nbytes, name), host_ops=kernels)]


def _latent_shapes(ctx: LayerContext) -> tuple[tuple, tuple] | None:
    """(fc1_latent_proj, fc2_latent_proj) GEMM shapes over the n local tokens, whole
    weights (duplicated over TP); None without LatentMoE."""
    m, n = ctx.model, local_tokens(ctx)
    lat = m.moe.latent_size
    return ((n, lat, m.hidden), (n, m.hidden, lat)) if lat else None


def moe_forward(ctx: LayerContext) -> list[Op]:
    m = ctx.model
    local, fc1, fc2 = expert_shapes(ctx)
    r = received(ctx)
    lat = _latent_shapes(ctx)
    down = [gemm(ctx, *lat[0], "fc1_latent_proj")] if lat else []
    up = [gemm(ctx, *lat[1], "fc2_latent_proj")] if lat else []
    ops: list[Op] = [*_router_forward(ctx), *down, *_permute(ctx),
                     # dropless: the counts gathered over the expert TP x EP group
                     # (tp_ep_group), then read on the host
                     ep_sync(ctx.moe.ep * ctx.moe.etp),
                     *route(ctx, "dispatch", out=False), *_sort_chunks(ctx, "expert_sort", True),
                     *[gemm(ctx, *fc1, "expert_fc1")] * local, *expert_clamp(ctx, bwd=False),
                     mem(ctx, "elementwise", activation_bytes(ctx, r, fc2[2]), "expert_activation"),
                     *[gemm(ctx, *fc2, "expert_fc2")] * local, *expert_bias(ctx, bwd=False),
                     *_sort_chunks(ctx, "expert_unsort", False),
                     *route(ctx, "combine", out=True), *_unpermute(ctx), *up]
    if m.moe.shared_experts:
        ops += shared_forward(ctx)
    return ops


def moe_backward(ctx: LayerContext) -> list[Op]:
    m = ctx.model
    local, fc1, fc2 = expert_shapes(ctx)
    r = received(ctx)
    lat = _latent_shapes(ctx)
    ops: list[Op] = []
    if m.moe.shared_experts:
        ops += shared_backward(ctx)
    if lat:
        ops += gemm_bwd(ctx, *lat[1], "fc2_latent_proj")
    ops += [*_unpermute_backward(ctx),
            *route(ctx, "combine_bwd", out=False), *_sort_chunks(ctx, "expert_unsort_bwd", False),
            *expert_bias(ctx, bwd=True),
            *gemm_bwd(ctx, *fc2, "expert_fc2") * local,
            mem(ctx, "elementwise", 1.5 * activation_bytes(ctx, r, fc2[2]), "expert_activation_bwd"),
            *expert_clamp(ctx, bwd=True),
            *gemm_bwd(ctx, *fc1, "expert_fc1") * local, *_sort_chunks(ctx, "expert_sort_bwd", True),
            *route(ctx, "dispatch_bwd", out=True),
            *_permute_backward(ctx), *(gemm_bwd(ctx, *lat[0], "fc1_latent_proj") if lat else []),
            *_router_backward(ctx)]
    return ops


# ------------------------------------------------------------------------- whole layers

def _dense_mlp(ctx: LayerContext) -> list[Op]:
    g = layer_gemm_shapes(ctx)
    return [*enter_tp(ctx, "tp_ag_mlp"), gemm(ctx, *g["mlp_up"], "mlp_up"),
            mem(ctx, "elementwise", activation_bytes(ctx, ctx.tokens, ctx.model.ffn // ctx.tp), "activation"),
            gemm(ctx, *g["mlp_down"], "mlp_down"), *exit_tp(ctx, "tp_mlp_out")]


def _dense_mlp_bwd(ctx: LayerContext) -> list[Op]:
    g = layer_gemm_shapes(ctx)
    return [*exit_tp_bwd(ctx, "tp_mlp_out_bwd"), *gemm_bwd(ctx, *g["mlp_down"], "mlp_down"),
            mem(ctx, "elementwise", 1.5 * activation_bytes(ctx, ctx.tokens, ctx.model.ffn // ctx.tp), "activation_bwd"),
            *gemm_bwd(ctx, *g["mlp_up"], "mlp_up"), *enter_tp_bwd(ctx, "tp_mlp_in_bwd")]


def _hybrid_body(ctx: LayerContext, i: int, bwd: bool) -> list[Op]:
    """The mixer, attention or MLP of sub-layer ``i`` of a hybrid model, with the TP
    collectives around it (MoE layers run sequence-parallel, without them)."""
    k = mamba_spec.kind(ctx.model, i)
    if k == mamba_spec.MOE:
        return moe_backward(ctx) if bwd else moe_forward(ctx)
    if k == mamba_spec.MLP:
        return _dense_mlp_bwd(ctx) if bwd else _dense_mlp(ctx)
    if k == mamba_spec.MAMBA:
        body = mamba_backward(ctx) if bwd else mamba_forward(ctx)
    else:
        body = attn_backward(ctx, False) if bwd else attn_forward(ctx, False)
    if bwd:
        return [*exit_tp_bwd(ctx, "tp_mixer_out_bwd"), *body, *enter_tp_bwd(ctx, "tp_mixer_in_bwd")]
    return [*enter_tp(ctx, "tp_ag_mixer"), *body, *exit_tp(ctx, "tp_mixer_out")]


def _hybrid_norm(ctx: LayerContext, i: int) -> str:
    """The pre-norm's op name by sub-layer: a MoE sub-layer's is the TransformerLayer's
    pre_mlp_layernorm (run in _forward_mlp, so inside the ``moe`` CUDA-graph scope, not
    ``attn``); a dense MLP's is fused into its fc1 like a GPT layer's post-attention norm;
    the Mamba mixer's (fused into in_proj) and attention's are the layer's input norm."""
    k = mamba_spec.kind(ctx.model, i)
    return {mamba_spec.MOE: "pre_mlp_norm", mamba_spec.MLP: "post_attn_norm"}.get(k, "input_norm")


def hybrid_forward_at(ctx: LayerContext, i: int) -> list[Op]:
    """One sub-layer of a hybrid model: pre-norm, body, residual add (Megatron-Core
    MambaLayer / TransformerLayer with the other half an identity)."""
    e, Tn, h = ctx.act_bytes, ctx.norm_tokens, ctx.model.hidden
    return [mem(ctx, "norm", 2 * e * Tn * h, _hybrid_norm(ctx, i)), *_hybrid_body(ctx, i, False),
            mem(ctx, "elementwise", (3 * e + 1) * Tn * h, "bias_dropout_add")]


def hybrid_backward_at(ctx: LayerContext, i: int) -> list[Op]:
    e, Tn, h = ctx.act_bytes, ctx.norm_tokens, ctx.model.hidden
    return [mem(ctx, "elementwise", (2 * e + 1) * Tn * h, "dropout_add_bwd"),
            *_hybrid_body(ctx, i, True), mem(ctx, "norm", 3 * e * Tn * h, _hybrid_norm(ctx, i) + "_bwd")]


def layer_forward_at(ctx: LayerContext, i: int) -> list[Op]:
    """Forward kernels of layer ``i``."""
    if ctx.model.hybrid_pattern is not None:
        return hybrid_forward_at(ctx, i)
    moe, window = _kind(ctx, i)
    if dsv4(ctx.model) is not None:
        return layer_dsv4.layer_forward(ctx, i, moe_forward(ctx) if moe else _dense_mlp(ctx))
    e, Tn, h = ctx.act_bytes, ctx.norm_tokens, ctx.model.hidden
    norm, dropout_add = 2 * e * Tn * h, (3 * e + 1) * Tn * h
    return [mem(ctx, "norm", norm, "input_norm"), *enter_tp(ctx, "tp_ag_attn"),
            *attn_forward(ctx, window), *exit_tp(ctx, "tp_attn_out"),
            mem(ctx, "elementwise", dropout_add, "bias_dropout_add"),
            mem(ctx, "norm", norm, "post_attn_norm"),
            *(moe_forward(ctx) if moe else _dense_mlp(ctx)),
            mem(ctx, "elementwise", dropout_add, "bias_dropout_add")]


def layer_backward_at(ctx: LayerContext, i: int) -> list[Op]:
    if ctx.model.hybrid_pattern is not None:
        return hybrid_backward_at(ctx, i)
    moe, window = _kind(ctx, i)
    if dsv4(ctx.model) is not None:
        return layer_dsv4.layer_backward(ctx, i, moe_backward(ctx) if moe else _dense_mlp_bwd(ctx))
    e, Tn, h = ctx.act_bytes, ctx.norm_tokens, ctx.model.hidden
    norm_bwd, dropout_bwd = 3 * e * Tn * h, (2 * e + 1) * Tn * h
    return [mem(ctx, "elementwise", dropout_bwd, "dropout_add_bwd"),
            *(moe_backward(ctx) if moe else _dense_mlp_bwd(ctx)),
            mem(ctx, "norm", norm_bwd, "post_attn_norm_bwd"),
            mem(ctx, "elementwise", dropout_bwd, "dropout_add_bwd"), *exit_tp_bwd(ctx, "tp_attn_out_bwd"),
            *attn_backward(ctx, window), *enter_tp_bwd(ctx, "tp_attn_in_bwd"),
            mem(ctx, "norm", norm_bwd, "input_norm_bwd")]


def layer_recompute_at(ctx: LayerContext, i: int, mode) -> list[Op]:
    """Full recompute re-runs the forward; selective recomputes the attention core, which
    the fused kernels used here already do in their backward (no extra cost).
    Megatron-Core's recompute_modules (a module-set mode such as ``norm_moe_act``, or the
    list itself: workloads/parallel.recompute_modules) re-run, before the backward needs
    their outputs, each module's forward kernels as the forward costs them
    (megatron/core/transformer/transformer_layer.py, attention.py, moe/moe_layer.py):
    - ``layernorm``: the norms that are modules of their own (input_layernorm and
      pre_mlp_layernorm unless an IdentityOp). In a hybrid model only the MoE sub-layers'
      pre-MLP TENorm: the Mamba, attention and MLP sub-layers fuse their norm into
      TELayerNormColumnParallelLinear (models/hybrid/hybrid_layer_specs.py);
    - ``core_attn``: the attention kernel of an attention layer (tensor_parallel.checkpoint
      re-runs the fused attention forward before its backward);
    - ``moe_act``: the routed experts' activation;
    - ``moe``: the whole MoE block (MoELayer.forward's custom_forward under a checkpoint:
      shared experts, router, permutation, dispatch and combine all-to-alls, experts); a
      ``moe_act`` or ``shared_experts`` checkpoint inside it runs once more in the backward;
    - ``shared_experts``: the shared experts (their own checkpoint);
    - ``mla_up_proj``: MLA's up projections and RoPE (layer_attention.mla_up_proj_recompute;
      DeepSeek-V4: the query up and KV projections, layer_dsv4.up_proj_recompute);
    - ``mlp``: the dense layers' MLP only, not the MoE layers' experts; in a hybrid model
      the MLP sub-layers ``-``, which Megatron-Core builds as transformer layers."""
    if mode == "full":
        return layer_forward_at(ctx, i)
    modules = recompute_modules(mode)
    ops: list[Op] = []
    moe, window = _kind(ctx, i)
    hybrid = ctx.model.hybrid_pattern is not None
    if "layernorm" in modules:
        norm = 2 * ctx.act_bytes * ctx.norm_tokens * ctx.model.hidden
        if not hybrid:
            ops += [mem(ctx, "norm", norm, "input_norm"), mem(ctx, "norm", norm, "post_attn_norm")]
        elif moe:
            ops.append(mem(ctx, "norm", norm, "pre_mlp_norm"))
    if "core_attn" in modules and dsv4(ctx.model) is not None:
        ops.append(layer_dsv4.core_attention(ctx, ratio(ctx.model, i), bwd=False))
    elif "core_attn" in modules and (not hybrid or mamba_spec.kind(ctx.model, i) == mamba_spec.ATTENTION):
        att = mla(ctx.model)
        d_qk, d_v = (att.qk_head_dim, att.v_head_dim) if att else (ctx.model.head_dim,) * 2
        ops.append(fused_attention(ctx, window and not hybrid, d_qk, d_v, False))
    if "moe" in modules and moe:
        ops += moe_forward(ctx)
    if "moe_act" in modules and moe:
        ops += [*expert_clamp(ctx, bwd=False),
                mem(ctx, "elementwise", activation_bytes(ctx, received(ctx), expert_shapes(ctx)[2][2]),
                    "expert_activation")]
    if "shared_experts" in modules and moe and ctx.model.moe.shared_experts:
        ops += shared_forward(ctx)
    if "mla_up_proj" in modules:
        ops += _up_proj_recompute(ctx)
    if "mlp" in modules and not moe and mamba_spec.kind(ctx.model, i) in (None, mamba_spec.MLP):
        ops += _dense_mlp(ctx)                   # normal checkpointing: the whole dense MLP
    return ops


def _up_proj_recompute(ctx: LayerContext) -> list[Op]:
    """[mla_up_proj]: DeepSeek-V4's or MLA's up projections (none in a hybrid model)."""
    if dsv4(ctx.model) is not None:
        return layer_dsv4.up_proj_recompute(ctx)
    return [] if ctx.model.hybrid_pattern is not None else mla_up_proj_recompute(ctx)


def mtp_forward(ctx: LayerContext) -> list[Op]:
    """One MTP pass before the shared head: two norms, the (2h -> h) projection over
    TP, the module's layers: one like the model's last (DeepSeek-V3 section 2.2), or a
    hybrid model's ``mtp_pattern`` sub-layers (workloads/moe.py ``mtp_layer_ids``)."""
    e, Tn, T, h = ctx.act_bytes, ctx.norm_tokens, ctx.tokens, ctx.model.hidden
    return [mem(ctx, "norm", 4 * e * Tn * h, "mtp_norms"), *enter_tp(ctx, "tp_ag_mtp"),
            gemm(ctx, T, h // ctx.tp, 2 * h, "mtp_eh_proj"), *exit_tp(ctx, "tp_mtp_out"),
            *[op for i in mtp_layer_ids(ctx.model) for op in layer_forward_at(ctx, i)]]


def mtp_backward(ctx: LayerContext) -> list[Op]:
    e, Tn, T, h = ctx.act_bytes, ctx.norm_tokens, ctx.tokens, ctx.model.hidden
    layers = [op for i in reversed(mtp_layer_ids(ctx.model)) for op in layer_backward_at(ctx, i)]
    return [*layers, *exit_tp_bwd(ctx, "tp_mtp_out_bwd"),
            *gemm_bwd(ctx, T, h // ctx.tp, 2 * h, "mtp_eh_proj"), *enter_tp_bwd(ctx, "tp_mtp_in_bwd"),
            mem(ctx, "norm", 6 * e * Tn * h, "mtp_norms_bwd")]
