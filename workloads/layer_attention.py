"""Attention kernels of one layer of a non-uniform model (MLA, windowed attention) on one
rank, and the 16-bit context FP8 training keeps for attention, router and output layer.

Attention: Megatron-style TP (heads split over tp). MLA (DeepSeek-V2/V3): the down
projections of Q and of the KV latent are replicated on every TP rank and run on the
gathered tokens; the up projections and the output projection are split by heads; the
fused attention works on d_qk = nope + rope and d_v head dims. Windowed layers (sliding
or chunked) compute only the query-key pairs inside the window.
"""

from __future__ import annotations

from dataclasses import replace

from workloads.graph import Compute
from workloads.layers import (
    LayerContext,
    Op,
    gemm,
    gemm_bwd,
    layer_gemm_shapes,
    mem,
    repeat_kv_copy,
)
from workloads.moe import mla


def bf16_context(ctx: LayerContext) -> LayerContext:
    """FP8 training keeps the dot-product attention, the router and the output layer in
    16-bit (Transformer Engine's fp8_autocast covers the transformer layers' linear
    GEMMs; fp8 attention is a separate, default-off option)."""
    return replace(ctx, dtype="bf16") if ctx.dtype == "fp8" else ctx


def _pairs(ctx: LayerContext, window: bool) -> tuple[float, int]:
    """(causal query-key pairs per sequence, keys per query for the efficiency curve)."""
    s = ctx.model.seq_len
    w = ctx.model.sliding_window
    if not window:
        return s * s / 2, s
    size = min(w.size, s)
    if w.kind == "chunked":
        full, rest = divmod(s, size)
        return full * size * (size + 1) / 2 + rest * (rest + 1) / 2, size
    return s * size - size * (size - 1) / 2, size


def fused_attention(ctx: LayerContext, window: bool, d_qk: int, d_v: int, bwd: bool) -> Compute:
    """Fused attention of the local heads; backward = 2.5 x forward FLOPs (FA2). FP8
    attention (``ctx.fp8_attention``) runs at the 16-bit kernel's pace, but its backward
    does not skip the key blocks outside a sliding window: it computes every causal pair
    (cuDNN's SDPA training benchmark, kernels/cudnn_sdpa_gpt_oss.csv: the FP8 / MXFP8
    backward with a 128-token window grows as s^2 and takes the full causal kernel's time,
    -18..+9% for MXFP8 at 2k-32k tokens on GB200 / GB300; the forward keeps the window).
    The 16-bit kernels skip the key tiles outside the window (cuDNN 9.19.1 and 9.22: time
    linear in s at a fixed window), so only the window's pairs are priced."""
    bh, s, e = ctx.micro_batch * ctx.local_heads, ctx.model.seq_len, ctx.act_bytes
    pairs, kv = _pairs(ctx, window and not (bwd and ctx.fp8_attention))
    flops = 2.0 * bh * pairs * (d_qk + d_v) * (2.5 if bwd else 1.0)
    nbytes = e * bh * s * (2 * d_qk + 2 * d_v) * (2 if bwd else 1)
    return Compute("attention", flops, nbytes, bf16_context(ctx).dtype, (bh, s, kv, d_qk), causal=True,
                   name="flash_attn_bwd" if bwd else "flash_attn_fwd",
                   flops_per_exp=2.0 * (d_qk + d_v) * (2.5 if bwd else 1.0))


def _mla_gemms(ctx: LayerContext) -> list[tuple[tuple[int, int, int], str]]:
    att, T, lh = mla(ctx.model), ctx.tokens, ctx.local_heads
    h = ctx.model.hidden
    out = []
    if att.q_lora_rank:
        out += [((T, att.q_lora_rank, h), "mla_q_down"),
                ((T, lh * att.qk_head_dim, att.q_lora_rank), "mla_q_up")]
    else:
        out += [((T, lh * att.qk_head_dim, h), "mla_q")]
    out += [((T, att.kv_lora_rank + att.qk_rope_head_dim, h), "mla_kv_down"),
            ((T, lh * (att.qk_nope_head_dim + att.v_head_dim), att.kv_lora_rank), "mla_kv_up")]
    return out


def _unfused_yarn(ctx: LayerContext) -> bool:
    """Whether RoPE runs as Megatron-Core's unfused PyTorch code: Megatron-Bridge turns
    ``apply_rope_fusion`` off for any ``position_embedding_type`` other than "rope"
    (``validate_rope_fusion_compatibility``, src/megatron/bridge/utils/fusions.py, v0.2.0 to
    v0.6.0), so YaRN runs ``_apply_rotary_pos_emb_bshd`` (and Megatron-Core 0.16+ would
    also fall back to it for YaRN's concentration factor, 0.1 ln(32) + 1 for gpt-oss, which
    TE's fused kernel does not take)."""
    return ctx.model.rope_scaling == "yarn"


def _rope(ctx: LayerContext, bwd: bool) -> list[Op]:
    """RoPE of the queries and keys (N elements of e bytes on this rank; none without
    rotary positions: the hybrid Mamba models). Fused (TE): one
    read and one write of N in the forward. Unfused (``_unfused_yarn``; Megatron-Core
    ``_apply_rotary_pos_emb_bshd``, core 0.15-0.18, with rot_dim = head dim): per tensor
    ``t * cos``, ``-x2`` of half, ``torch.cat((-x2, x1))``, ``* sin``, the sum and the final
    ``torch.cat((t, t_pass))`` copy, 12 e N bytes in 6 kernels, plus cos, sin, their
    scaling and casts over the small (s, d) table (6 kernels); backward, the two products'
    gradients, the negation, the chunk's gradient ``cat``, the sum of t's two gradients and
    the slice's ``zeros`` and ``copy_`` (``slice_backward``): 13 e N bytes in 7 kernels."""
    m, e, T = ctx.model, ctx.act_bytes, ctx.tokens
    n = T * (ctx.local_heads + ctx.local_kv_heads) * m.head_dim
    if not _unfused_yarn(ctx):
        return [] if bwd or not m.rope else [mem(ctx, "elementwise", 2 * e * n, "rope")]
    if bwd:
        return [replace(mem(ctx, "elementwise", 13 * e * n, "rope_bwd"), host_ops=2 * 7)]
    return [replace(mem(ctx, "elementwise", 12 * e * n, "rope"), host_ops=2 * 12)]


def attn_forward(ctx: LayerContext, window: bool) -> list[Op]:
    m, e, T = ctx.model, ctx.act_bytes, ctx.tokens
    att = mla(m)
    if att is None:
        g = layer_gemm_shapes(ctx)
        return [gemm(ctx, *g["qkv"], "qkv"), *_rope(ctx, bwd=False),
                *repeat_kv_copy(ctx, "repeat_kv"),
                fused_attention(ctx, window, m.head_dim, m.head_dim, False), gemm(ctx, *g["proj"], "attn_proj")]
    ops: list[Op] = [gemm(ctx, *shape, name) for shape, name in _mla_gemms(ctx)]
    latent = (att.q_lora_rank or 0) + att.kv_lora_rank
    rope = e * 2 * T * (ctx.local_heads + 1) * att.qk_rope_head_dim
    ops += [mem(ctx, "norm", 2 * e * T * latent, "mla_latent_norms"), mem(ctx, "elementwise", rope, "rope"),
            fused_attention(ctx, window, att.qk_head_dim, att.v_head_dim, False),
            gemm(ctx, T, m.hidden, ctx.local_heads * att.v_head_dim, "attn_proj")]
    return ops


def mla_up_proj_recompute(ctx: LayerContext) -> list[Op]:
    """Megatron-Core's recompute_modules [mla_up_proj] (multi_latent_attention.py
    qkv_up_proj_and_rope_apply under CheckpointWithoutOutput, in FP8 where the model runs
    FP8): the query and key-value up projections (the query projection without a query
    latent) and RoPE re-run before the attention backward, as the forward costs them; their
    outputs (Q, K, V) are not stored. The down projections and latent norms are kept."""
    att, m, e, T = mla(ctx.model), ctx.model, ctx.act_bytes, ctx.tokens
    if att is None:
        return []
    ups = [gemm(ctx, *shape, name) for shape, name in _mla_gemms(ctx) if not name.endswith("_down")]
    rope = e * 2 * T * (ctx.local_heads + 1) * att.qk_rope_head_dim
    return [*ups, mem(ctx, "elementwise", rope, "rope")] if m.rope else ups


def attn_backward(ctx: LayerContext, window: bool) -> list[Op]:
    m, e, T = ctx.model, ctx.act_bytes, ctx.tokens
    att = mla(m)
    if att is None:
        g = layer_gemm_shapes(ctx)
        return [*gemm_bwd(ctx, *g["proj"], "attn_proj"),
                fused_attention(ctx, window, m.head_dim, m.head_dim, True),
                *repeat_kv_copy(ctx, "repeat_kv_bwd"), *_rope(ctx, bwd=True),
                *gemm_bwd(ctx, *g["qkv"], "qkv")]
    latent = (att.q_lora_rank or 0) + att.kv_lora_rank
    ops: list[Op] = [*gemm_bwd(ctx, T, m.hidden, ctx.local_heads * att.v_head_dim, "attn_proj"),
                     fused_attention(ctx, window, att.qk_head_dim, att.v_head_dim, True),
                     mem(ctx, "norm", 3 * e * T * latent, "mla_latent_norms_bwd")]
    for shape, name in reversed(_mla_gemms(ctx)):
        ops += gemm_bwd(ctx, *shape, name)
    return ops
