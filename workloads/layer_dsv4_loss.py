"""The lightning indexer's training loss on a DeepSeek-V4 CSA layer (``attention.indexer_loss``;
Megatron-Core ``dsa_indexer_loss_coeff`` > 0, ``dsa_indexer_use_sparse_loss``).

What Megatron-Core runs (NVIDIA/Megatron-LM dev d48bd6be0a85, the DSv4 code the 26.08
Megatron-Bridge recipe trains with: megatron/core/transformer/experimental_attention_variant/
csa.py ``_forward_fused_indexer_training``, csa_utils/fused_sparse_attention.py
``FusedCSAIndexerSparseAttnFunc.forward``):

- the indexer runs on ``x.detach()`` and ``qr.detach()`` and its target on ``query.detach()``
  and the detached compressed entries: the loss trains the indexer's weights only, and no
  gradient of it reaches the main model. The indexer's projections therefore run no dgrad
  (their inputs need no gradient), with or without the loss.
- sparse loss: ``predict`` = softmax over the indexer's top-k scores (unfused PyTorch: clamp,
  ``.long()``, gather from the fp32 scores, ``where``, softmax over (b, s, topk) fp32);
  ``target`` = cuDNN's ``sparse_attn_score_recompute``: q.k of every local head against the
  selected entries, exp against the attention's LSE (with the sink, ``logaddexp``), summed
  over heads and L1-normalised; KL(target || predict) as unfused PyTorch ops (two clamps,
  two logs, a subtract, a multiply, a row sum, the row-valid mask);
- dense loss (Megatron's default when the coefficient is set): the same over every causal
  compressed entry, with the teacher's LSE re-computed over them (``_compute_full_csa_
  teacher_lse``) before ``dense_attn_score_recompute``;
- the indexer backward runs eagerly in the forward (cuDNN ``indexer_backward_wrapper`` on
  clones of target and predict: the per-head scores re-computed, then d_q, d_k, d_weights),
  its three gradients saved for the backward, which scales them by the loss gradient.

Without the loss the indexer's gradients are zeros (no kernel): its score GEMM has no
backward. Top-k tensors are padded to ``index_topk`` slots (-1 past the causal edge).
"""

from __future__ import annotations

from workloads import dsv4 as spec
from workloads.dsv4 import compressed_pairs
from workloads.graph import Compute
from workloads.layer_attention import bf16_context
from workloads.layers import LayerContext, Op, mem

FP32, INDEX = 4, 4       # fp32 scores and probabilities; int32 top-k indices
# Bytes per top-k slot of the unfused predict: clamp(min=0) (r 4, w 4), .long() (r 4, w 8),
# gather (r 8 index, 4 score, w 4), ``>= 0`` (r 4, w 1), where (r 1 + 4, w 4), softmax (r 4, w 4).
PREDICT_BYTES, PREDICT_KERNELS = 8 + 12 + 16 + 5 + 9 + 8, 6
# KL per slot: two clamps and two logs (r 4, w 4 each), subtract and multiply (r 8, w 4),
# the row sum (r 4), the row-valid mask (r 4, w 1; any: r 1; the (b, s) where).
KL_BYTES, KL_KERNELS = 4 * 8 + 2 * 12 + 4 + 5 + 1, 10
# The indexer backward re-computes each pair's per-head scores and forms d_q and d_k: 3 x the
# score FLOPs.
INDEX_BWD_PASSES = 3


def active(ctx: LayerContext, r: int) -> bool:
    """The loss runs on this layer (a CSA layer of a model with ``indexer_loss`` set)."""
    att = spec.dsv4(ctx.model)
    return bool(r) and spec.is_sparse(att, r) and att.indexer_loss != "none"


def pairs(ctx: LayerContext, r: int) -> float:
    """Query-entry pairs of the loss per micro-batch: the selected ones (sparse) or every
    causal compressed entry (dense)."""
    att, s = spec.dsv4(ctx.model), ctx.model.seq_len
    topk = att.index_topk if att.indexer_loss == "sparse" else None
    return ctx.micro_batch * compressed_pairs(s, r, topk)


def _slots(ctx: LayerContext, r: int) -> float:
    """Elements of one (b, s, slots) fp32 tensor: top-k slots (sparse) or s / r (dense)."""
    att, s = spec.dsv4(ctx.model), ctx.model.seq_len
    per = att.index_topk if att.indexer_loss == "sparse" else s / r
    return ctx.micro_batch * s * per


def _target(ctx: LayerContext, r: int, n: float, name: str) -> Compute:
    """q.k of the local heads over the loss's pairs with one exp each (a QK-only pass on the
    attention curve): the target, or the dense teacher's LSE."""
    att, m, e = spec.dsv4(ctx.model), ctx.model, ctx.act_bytes
    b, s, hd, lh = ctx.micro_batch, m.seq_len, att.head_dim, ctx.local_heads
    flops = 2.0 * lh * n * hd
    nbytes = e * (b * s * lh * hd + n * hd) + FP32 * (b * s * lh + 2 * _slots(ctx, r))
    return Compute("attention", flops, nbytes, bf16_context(ctx).dtype,
                   (b * lh, s, max(1, round(n / (b * s))), hd), causal=True, name=name,
                   flops_per_exp=2.0 * hd)


def _copies(ctx: LayerContext, r: int) -> float:
    """Bytes of the permute copies before the target (``.contiguous()`` on (s, b, ...) ->
    (b, s, ...): a copy only when b > 1): the query, the compressed entries, the LSE."""
    if ctx.micro_batch == 1:
        return 0.0
    att, m, e, b = spec.dsv4(ctx.model), ctx.model, ctx.act_bytes, ctx.micro_batch
    s, lh = m.seq_len, ctx.local_heads
    return 2 * (e * b * s * lh * att.head_dim + e * b * s / r * att.head_dim + FP32 * b * s * lh)


def _grads_bytes(ctx: LayerContext, r: int) -> float:
    """The indexer's query, key and head-weight gradients (16-bit)."""
    att, b, s, e = spec.dsv4(ctx.model), ctx.micro_batch, ctx.model.seq_len, ctx.act_bytes
    ih, ihd = att.index_heads, att.index_head_dim
    return e * (b * s * ih * ihd + b * s / r * ihd + b * s * ih)


def _indexer_bwd(ctx: LayerContext, r: int) -> Compute:
    """cuDNN's indexer backward over the loss's pairs (eager, in the forward)."""
    att, b, s, e = spec.dsv4(ctx.model), ctx.micro_batch, ctx.model.seq_len, ctx.act_bytes
    ih, ihd, n = att.index_heads, att.index_head_dim, pairs(ctx, r)
    flops = INDEX_BWD_PASSES * 2.0 * n * ih * ihd
    nbytes = (e * (b * s * ih * ihd + b * s * ih + n * ihd) + 2 * FP32 * _slots(ctx, r)
              + INDEX * _slots(ctx, r) + _grads_bytes(ctx, r))
    return Compute("gemm", flops, nbytes, bf16_context(ctx).dtype,
                   (b * s, max(1, round(n / (b * s))), ih * ihd), name="dsv4_index_loss_indexer_bwd")


def forward(ctx: LayerContext, r: int) -> list[Op]:
    """The loss's forward (and the indexer backward it runs eagerly) on a CSA layer."""
    if not active(ctx, r):
        return []
    att, b, s = spec.dsv4(ctx.model), ctx.micro_batch, ctx.model.seq_len
    slots, lh = _slots(ctx, r), ctx.local_heads
    predict = Compute("softmax", 0.0, PREDICT_BYTES * slots, ctx.dtype,
                      name="dsv4_index_loss_predict", host_ops=PREDICT_KERNELS)
    if att.indexer_loss == "dense":          # the dense scores' logsumexp: one read
        predict = mem(ctx, "softmax", FP32 * slots, "dsv4_index_loss_predict")
    ops: list[Op] = [predict,
                     mem(ctx, "elementwise", 2 * FP32 * b * s * lh + _copies(ctx, r),
                         "dsv4_index_loss_teacher_lse")]
    if att.indexer_loss == "dense":
        ops.append(_target(ctx, r, pairs(ctx, r), "dsv4_index_loss_teacher_full_lse"))
    ops += [_target(ctx, r, pairs(ctx, r), "dsv4_index_loss_target"),
            Compute("elementwise", 0.0, KL_BYTES * slots, ctx.dtype, name="dsv4_index_loss_kl",
                    host_ops=KL_KERNELS),
            mem(ctx, "elementwise", 2 * 2 * FP32 * slots, "dsv4_index_loss_clone"),
            _indexer_bwd(ctx, r)]
    return ops


def backward(ctx: LayerContext, r: int) -> list[Op]:
    """The backward scales the saved indexer gradients by the loss gradient (read, write)."""
    if not active(ctx, r):
        return []
    return [mem(ctx, "elementwise", 2 * _grads_bytes(ctx, r), "dsv4_index_loss_grad_scale")]
