"""Host-issued kernels of an eager Megatron-Core MoE layer, counted from the code
(workloads/host_launch.py prices them; workloads/moe_layers.py attaches the counts to its
ops as ``Compute.host_ops``)."""

from __future__ import annotations

# Host-issued kernels of the token permutation (eager training; workloads/host_launch.py),
# read from the code:
# - the all-to-all dispatcher's count bookkeeping (MoEAlltoAllTokenDispatcher.preprocess,
#   megatron/core/transformer/moe/token_dispatcher.py, core 0.15-0.18 and Megatron-LM
#   76065f17 / d30c3ae5, EP or TP > 1): routing_map.sum, the input splits' sum, the
#   all-gather of the counts, the local slice's .contiguous(), three sums (per rank, per
#   TP rank, per local expert): 7 kernels; _maybe_dtoh_and_synchronize copies
#   tokens_per_expert, input_splits, output_splits and output_splits_tp to the host (4),
#   and without moe_permute_fusion num_global_tokens_per_local_expert too (1 more);
# - TE's fused permutation with the mask map (transformer_engine/pytorch/permutation.py
#   _moe_permute_mask_map, TE 2.9-2.16): make_row_id_map's three Triton passes and the
#   permute kernel (4); its backward one unpermute kernel;
# - TE's chunk sort (_moe_chunk_sort): make_chunk_sort_map and sort_chunks_by_map (2); its
#   backward one sort; unfused (sort_chunks_by_idxs), a torch.cat of the split tokens and
#   one of the probabilities, each way.
ALLTOALL_COUNT_KERNELS = 7
ALLTOALL_DTOH_COPIES = 4
TE_PERMUTE_KERNELS = 4
TE_CHUNK_SORT_KERNELS = 2


def count_kernels(local_experts: int, permute_fusion: bool) -> int:
    """Host ops of the all-to-all dispatcher's count bookkeeping before the permutation
    (EP or TP > 1): the count kernels and the copies to the host, one copy more for the
    tokens per local expert without ``moe_permute_fusion``."""
    unfused_copy = int(local_experts > 1 and not permute_fusion)
    return ALLTOALL_COUNT_KERNELS + ALLTOALL_DTOH_COPIES + unfused_copy


def router_kernels(fusion: bool, aux_loss: bool, wide: bool, bwd: bool) -> int:
    """Kernels the host issues for the router's scoring after its GEMM (the ``router_topk``
    op), forward or backward (``wide``: logits not fp32), read from Megatron-Core's router
    (core 0.15-0.18: megatron/core/transformer/moe/router.py TopKRouter.routing, moe_utils.py
    topk_routing_with_score_function, compute_routing_scores_for_aux_loss,
    switch_load_balancing_loss_func, save_to_aux_losses_tracker, MoEAuxLossAutoScaler),
    for a softmax router without pre-softmax, groups or expert bias.

    ``router_fusion`` (moe_router_fusion): Transformer Engine's fused_topk_with_score_function,
    one kernel each way. Without it, forward: ``torch.topk`` of the logits, ``softmax(dtype=
    float32)`` and ``type_as`` back (plus the input cast and the cast back when the logits
    are not fp32), the probabilities ``zeros_like(...).scatter`` (fill, copy, scatter) and
    the routing map ``zeros_like(...).int().scatter(...).bool()`` (fill, cast, copy, scatter,
    cast): 10 kernels, 12 with non-fp32 logits. Backward: the scatter's gather, softmax's
    backward, top-k's backward (fill and scatter), plus two casts with non-fp32 logits: 4 / 6.

    ``aux_loss`` (load-balancing loss on): fused, forward
    fused_compute_score_for_moe_aux_loss, ``routing_map.sum(0)``, fused_moe_aux_loss and the
    tracker's divide and in-place add: 5; backward MoEAuxLossAutoScaler's ``ones_like * scale``
    (2), the two fused backward kernels and the gradient sum into the logits: 5. Unfused,
    forward the scores' softmax (an input cast with non-fp32 logits), top-k and routing map
    (5 as above), its sum, the loss's sum, product, sum and scale (4) and the tracker (2):
    14 (+1); backward the scaler (2), the scale's and the product's gradients (2), softmax's
    backward (a cast with non-fp32 logits) and the sum into the logits: 6 (+1).
    The tensor-parallel reduction of the counts is a no-op on one TP x CP rank. A sigmoid
    router (DeepSeek-V3: its expert bias, group-limited top-k and probability
    normalization add a few kernels more) takes the softmax router's count, a lower bound."""
    if fusion:
        return 1 + (5 if aux_loss else 0)
    if bwd:
        return (6 if wide else 4) + ((7 if wide else 6) if aux_loss else 0)
    return (12 if wide else 10) + ((15 if wide else 14) if aux_loss else 0)
