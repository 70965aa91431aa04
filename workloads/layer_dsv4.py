"""Training kernels of one DeepSeek-V4 layer on one rank: the hybrid attention of
``compress_ratios[i]`` and the hyper-connection mixing (shapes: workloads/dsv4.py).

Tensor parallelism as for MLA (workloads/layer_attention.py): the query down projection,
the shared KV projection, the compressors and the whole lightning indexer run replicated
on the gathered tokens (the indexer's scores need every index head; splitting them would
all-reduce a T x T/r score matrix); the query up projection is split by heads, the grouped
output projection by groups (``wo_a``: o_groups / tp batched GEMMs) and ``wo_b`` is
row-parallel before the TP reduce.

Per layer with ratio r, tokens T = b s (b sequences of s):
- compressor: one GEMM (T, 2 coff head_dim, h) for ``wkv`` and ``wgate``, then the
  softmax pooling of every r (2r overlapped) rows, memory-bound;
- indexer (CSA): its query GEMM from the query latent, the head-weight GEMM, its own
  compressor, the Hadamard rotation, the scores of every query against the s/r entries
  before it as one GEMM of K = index_heads x index_head_dim per pair (fp32 logits written,
  causal half), and a top-k pass reading the logits;
- sparse attention: 2 heads (head_dim + head_dim) FLOPs per query-entry pair over the
  window's raw entries and the selected (CSA: min(top-k, pos / r)) or all earlier (HCA:
  pos / r) compressed ones, priced as the attention kernel class; the selected entries are
  gathered per query (read once for all heads), the window and HCA entries read once.
  Backward: 2.5 x the forward FLOPs (FA2 convention), the indexer's score GEMM 2 x.
- hyper-connections, per sub-layer: ``hc_pre`` (the mixing GEMM (n, (2 + c) c, c h), the
  Sinkhorn iterations on the c x c matrices, a weighted sum of the c copies), and
  ``hc_post`` (reads the output and the c copies, writes c copies) in place of the
  residual add; n: the sequence-parallel tokens.
"""

from __future__ import annotations

from workloads import dsv4 as spec
from workloads.graph import Compute
from workloads.layer_attention import bf16_context
from workloads.layers import (
    LayerContext,
    Op,
    enter_tp,
    enter_tp_bwd,
    exit_tp,
    exit_tp_bwd,
    gemm,
    gemm_bwd,
    mem,
)

FP32 = 4


def _window_pairs(s: int, w: int) -> float:
    """Causal query-entry pairs of a sliding window of ``w`` over ``s`` tokens."""
    w = min(w, s)
    return s * w - w * (w - 1) / 2


def compressed_pairs(s: int, r: int, topk: int | None) -> float:
    """Query-entry pairs over the compressed entries of one sequence: query at position p
    sees p / r of them, at most ``topk`` where the indexer selects (None: all)."""
    if topk is None or s / r <= topk:
        return s * s / (2 * r)
    edge = topk * r                     # past this position the top-k caps it
    return edge * edge / (2 * r) + (s - edge) * topk


def _gemms(ctx: LayerContext, r: int) -> list[tuple[tuple[int, int, int], str, int]]:
    """(shape, name, count) of the layer's projection GEMMs before the core attention."""
    att, m, T = spec.dsv4(ctx.model), ctx.model, ctx.tokens
    h, ql, hd = m.hidden, att.q_lora_rank, att.head_dim
    out = [((T, ql, h), "dsv4_q_down", 1), ((T, ctx.local_heads * hd, ql), "dsv4_q_up", 1),
           ((T, hd, h), "dsv4_kv_proj", 1)]
    if r:
        out.append(((T, 2 * spec.coff(att, r) * hd, h), "dsv4_compress_proj", 1))
    if r and spec.is_sparse(att, r):
        ih, ihd = att.index_heads, att.index_head_dim
        out += [((T, ih * ihd, ql), "dsv4_index_q", 1), ((T, ih, h), "dsv4_index_weights", 1),
                ((T, 2 * 2 * ihd, h), "dsv4_index_compress_proj", 1)]
    return out


def _out_gemms(ctx: LayerContext) -> list[tuple[tuple[int, int, int], str, int]]:
    """The grouped low-rank output: o_groups / tp batched (T, o_lora, heads head_dim /
    o_groups) GEMMs, then the row-parallel (T, h, local groups x o_lora)."""
    att, m, T = spec.dsv4(ctx.model), ctx.model, ctx.tokens
    groups = att.o_groups // ctx.tp
    return [((T, att.o_lora_rank, m.heads * att.head_dim // att.o_groups), "dsv4_o_down", groups),
            ((T, m.hidden, groups * att.o_lora_rank), "attn_proj", 1)]


def _elementwise(ctx: LayerContext, r: int) -> list[Op]:
    """Norms, RoPE and the compressors' pooling (memory-bound, 16-bit activations)."""
    att, T, e = spec.dsv4(ctx.model), ctx.tokens, ctx.act_bytes
    hd, lh = att.head_dim, ctx.local_heads
    ops = [mem(ctx, "norm", 2 * e * T * att.q_lora_rank, "dsv4_q_norm"),
           mem(ctx, "elementwise", 2 * e * T * lh * hd, "dsv4_q_scale_rope"),
           mem(ctx, "norm", 2 * e * T * hd, "dsv4_kv_norm_rope")]
    if r:
        c = spec.coff(att, r)
        ops.append(mem(ctx, "elementwise", e * (2 * T * c * hd + 2 * T / r * hd), "dsv4_compress_pool"))
    if r and spec.is_sparse(att, r):
        ihd, ih = att.index_head_dim, att.index_heads
        ops += [mem(ctx, "elementwise", e * (2 * T * 2 * ihd + 2 * T / r * ihd), "dsv4_index_compress_pool"),
                mem(ctx, "elementwise", 2 * e * T * ih * ihd, "dsv4_index_rotate")]
    return ops


def _index_ops(ctx: LayerContext, r: int, bwd: bool) -> list[Op]:
    """The indexer's scores of every query against the compressed entries before it, and
    the top-k over them (forward); backward, the scores' gradients (2 x)."""
    att, m, e = spec.dsv4(ctx.model), ctx.model, ctx.act_bytes
    if not (r and spec.is_sparse(att, r)):
        return []
    b, s, k = ctx.micro_batch, m.seq_len, att.index_heads * att.index_head_dim
    pairs = b * s * s / (2 * r)
    flops = 2.0 * pairs * k
    nbytes = e * b * (s * k + s / r * att.index_head_dim) + FP32 * pairs
    if bwd:
        return [Compute("gemm", 2 * flops, 2 * nbytes, bf16_context(ctx).dtype,
                        (b * s, max(1, s // r), k), name="dsv4_index_scores_bwd")]
    return [Compute("gemm", flops, nbytes, bf16_context(ctx).dtype, (b * s, max(1, s // r), k),
                    name="dsv4_index_scores"),
            mem(ctx, "softmax", FP32 * (pairs + b * s * att.index_topk), "dsv4_index_topk")]


def core_attention(ctx: LayerContext, r: int, bwd: bool) -> Compute:
    """Sparse attention of the local heads over the window and the compressed entries."""
    att, m, e = spec.dsv4(ctx.model), ctx.model, ctx.act_bytes
    b, s, hd, lh = ctx.micro_batch, m.seq_len, att.head_dim, ctx.local_heads
    win = _window_pairs(s, att.window)
    sparse = bool(r) and spec.is_sparse(att, r)
    comp = compressed_pairs(s, r, att.index_topk if sparse else None) if r else 0.0
    pairs = b * (win + comp)
    scale = 2.5 if bwd else 1.0
    flops = 2.0 * lh * pairs * 2 * hd * scale
    reads = b * (s + (s / r if r else 0)) + (pairs - b * win if sparse else 0)
    nbytes = e * (2 * b * s * lh * hd + reads * hd) * (2 if bwd else 1)
    return Compute("attention", flops, nbytes, bf16_context(ctx).dtype,
                   (b * lh, s, max(1, round(pairs / (b * s))), hd), causal=True,
                   name="dsv4_sparse_attn_bwd" if bwd else "dsv4_sparse_attn_fwd",
                   flops_per_exp=2.0 * 2 * hd * scale)


def attn_forward(ctx: LayerContext, r: int) -> list[Op]:
    ops: list[Op] = [gemm(ctx, *shape, name, n) for shape, name, n in _gemms(ctx, r)]
    ops += _elementwise(ctx, r) + _index_ops(ctx, r, False) + [core_attention(ctx, r, False)]
    e, T = ctx.act_bytes, ctx.tokens
    rope = spec.dsv4(ctx.model).qk_rope_head_dim
    ops.append(mem(ctx, "elementwise", 2 * e * T * ctx.local_heads * rope, "dsv4_o_unrope"))
    return ops + [gemm(ctx, *shape, name, n) for shape, name, n in _out_gemms(ctx)]


def attn_backward(ctx: LayerContext, r: int) -> list[Op]:
    ops: list[Op] = []
    for shape, name, n in reversed(_out_gemms(ctx)):
        ops += gemm_bwd(ctx, *shape, name, n)
    ops += [core_attention(ctx, r, True), *_index_ops(ctx, r, True)]
    ops += [mem(ctx, o.op_class, 1.5 * o.bytes, f"{o.name}_bwd") for o in _elementwise(ctx, r)]
    for shape, name, n in reversed(_gemms(ctx, r)):
        ops += gemm_bwd(ctx, *shape, name, n)
    return ops


# ----------------------------------------------------------------------- hyper-connections

def hc_pre(ctx: LayerContext, bwd: bool = False) -> list[Op]:
    """Mixing GEMM, Sinkhorn and the weighted sum of the c copies (or their backward)."""
    hc, h, n, e = ctx.model.hyper_connections, ctx.model.hidden, ctx.norm_tokens, ctx.act_bytes
    c, k = hc.copies, hc.mixes
    sink_flops = n * hc.sinkhorn_iters * 4.0 * c * c
    sink = Compute("elementwise", sink_flops * (2 if bwd else 1),
                   FP32 * n * (k + k) * (2 if bwd else 1), ctx.dtype,
                   name="hc_sinkhorn_bwd" if bwd else "hc_sinkhorn")
    if bwd:
        return [mem(ctx, "elementwise", e * n * (3 * c + 1) * h, "hc_pre_sum_bwd"), sink,
                *gemm_bwd(bf16_context(ctx), n, k, c * h, "hc_pre_mix")]
    return [gemm(bf16_context(ctx), n, k, c * h, "hc_pre_mix"), sink,
            mem(ctx, "elementwise", e * n * (c + 1) * h, "hc_pre_sum")]


def hc_post(ctx: LayerContext, bwd: bool = False) -> Op:
    """Output and combined copies written back as c copies (forward: read h + c h, write
    c h; backward: read the c copies' gradient, the output and the copies, write both
    gradients)."""
    c, h, n, e = ctx.model.hyper_connections.copies, ctx.model.hidden, ctx.norm_tokens, ctx.act_bytes
    if bwd:
        return mem(ctx, "elementwise", e * n * (3 * c + 2) * h, "hc_post_bwd")
    return mem(ctx, "elementwise", e * n * (2 * c + 1) * h, "hc_post")


def _residual(ctx: LayerContext, bwd: bool) -> tuple[list[Op], list[Op]]:
    """(before, after) a sub-layer: hc_pre / hc_post, or a plain residual add."""
    e, n, h = ctx.act_bytes, ctx.norm_tokens, ctx.model.hidden
    if ctx.model.hyper_connections is None:
        add = mem(ctx, "elementwise", (2 if bwd else 3) * e * n * h, "residual_add_bwd" if bwd else "residual_add")
        return [], [add]
    return hc_pre(ctx, bwd), [hc_post(ctx, bwd)]


def layer_forward(ctx: LayerContext, i: int, mlp: list[Op]) -> list[Op]:
    """Forward of layer ``i``: per sub-layer hc_pre, norm, body, hc_post."""
    r = spec.ratio(ctx.model, i)
    e, n, h = ctx.act_bytes, ctx.norm_tokens, ctx.model.hidden
    pre, post = _residual(ctx, False)
    return [*pre, mem(ctx, "norm", 2 * e * n * h, "input_norm"), *enter_tp(ctx, "tp_ag_attn"),
            *attn_forward(ctx, r), *exit_tp(ctx, "tp_attn_out"), *post,
            *pre, mem(ctx, "norm", 2 * e * n * h, "post_attn_norm"), *mlp, *post]


def layer_backward(ctx: LayerContext, i: int, mlp_bwd: list[Op]) -> list[Op]:
    r = spec.ratio(ctx.model, i)
    e, n, h = ctx.act_bytes, ctx.norm_tokens, ctx.model.hidden
    pre, post = _residual(ctx, True)
    return [*post, *mlp_bwd, mem(ctx, "norm", 3 * e * n * h, "post_attn_norm_bwd"), *pre,
            *post, *exit_tp_bwd(ctx, "tp_attn_out_bwd"), *attn_backward(ctx, r),
            *enter_tp_bwd(ctx, "tp_attn_in_bwd"), mem(ctx, "norm", 3 * e * n * h, "input_norm_bwd"),
            *pre]
