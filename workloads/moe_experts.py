"""The experts' own kernels in a MoE layer: the routed experts' GEMM shapes, the shared
experts as Megatron-Core's SharedExpertMLP runs them (a dense MLP on the TP group), and the
unfused pieces some recipes add around the grouped GEMMs (the fc2 bias weighted by the routing
probabilities, the clamp of a clamped gated activation). Used by workloads/moe_layers.py."""

from __future__ import annotations

from dataclasses import replace

from workloads.host_launch import host_sync
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
from workloads.moe import token_width
from workloads.moe_dispatch import received


def expert_shapes(ctx: LayerContext) -> tuple[int, tuple, tuple]:
    """(local experts, fc1 (m, n, k), fc2 (m, n, k)) with m the tokens per local expert."""
    m, mc = ctx.model, ctx.moe
    local = m.moe.experts // mc.ep
    f = m.moe.expert_ffn_hidden // mc.etp
    per = max(1, round(received(ctx) / local))
    up, d = f * (2 if m.gated else 1), token_width(m)
    return local, (per, up, d), (per, d, f)


def shared_shapes(ctx: LayerContext) -> tuple[tuple, tuple]:
    """The shared experts' (fc1, fc2) GEMMs on a TP rank. Megatron-Core's SharedExpertMLP is
    a dense MLP on the TP group (megatron/core/transformer/moe/shared_experts.py, HEAD
    d98e8a6, 2026: ``MLP.__init__(..., tp_group=pg_collection.tp)``): column-parallel fc1
    and row-parallel fc2 with the FFN split over tp, run on the whole sequence (the input
    gathered over the TP group with sequence parallelism, ``_shared_tp``); TorchTitan
    shards them the same way (ColwiseParallel / RowParallel)."""
    m, t, T = ctx.model, ctx.tp, ctx.tokens
    f = m.moe.shared_experts * m.moe.shared_ffn // t
    return (T, f * (2 if m.gated else 1), m.hidden), (T, m.hidden, f)


def shared_forward(ctx: LayerContext) -> list[Op]:
    """The shared experts: fc1, activation, fc2, between the TP collectives of a dense MLP
    (with sequence parallelism: all-gather before fc1, reduce-scatter after fc2; nothing
    at tp 1). Also what recompute_modules' ``shared_experts`` re-runs (Megatron-Core
    checkpoints the whole SharedExpertMLP forward, its collectives included)."""
    s1, s2 = shared_shapes(ctx)
    return [*enter_tp(ctx, "tp_ag_shared"),
            gemm(ctx, *s1, "shared_fc1"),
            mem(ctx, "elementwise", activation_bytes(ctx, s1[0], s2[2]), "shared_activation"),
            gemm(ctx, *s2, "shared_fc2"), *exit_tp(ctx, "tp_shared_out")]


def shared_backward(ctx: LayerContext) -> list[Op]:
    """``_shared_forward``'s backward: the collectives' conjugates around the GEMMs'
    gradients and the activation's backward."""
    s1, s2 = shared_shapes(ctx)
    return [*exit_tp_bwd(ctx, "tp_shared_out_bwd"),
            *gemm_bwd(ctx, *s2, "shared_fc2"),
            mem(ctx, "elementwise", 1.5 * activation_bytes(ctx, s1[0], s2[2]), "shared_activation_bwd"),
            *gemm_bwd(ctx, *s1, "shared_fc1"),
            *enter_tp_bwd(ctx, "tp_shared_in_bwd")]


def activation_bytes(ctx: LayerContext, tokens: float, f: int) -> float:
    return (3 if ctx.model.gated else 2) * ctx.act_bytes * tokens * f


def expert_bias(ctx: LayerContext, bwd: bool) -> list[Op]:
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
    local, _, fc2 = expert_shapes(ctx)
    row = ctx.act_bytes * received(ctx) * fc2[1] / local
    if bwd:
        return [mem(ctx, "elementwise", 3 * row, "expert_bias_grad"),
                mem(ctx, "elementwise", 3 * row, "expert_prob_grad")] * local
    return [*[mem(ctx, "elementwise", 4 * row, "expert_bias")] * local,
            mem(ctx, "elementwise", 2 * row * local, "expert_bias_cat")]


def expert_clamp(ctx: LayerContext, bwd: bool) -> list[Op]:
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
    e, rf = ctx.act_bytes, received(ctx) * expert_shapes(ctx)[2][2]
    if bwd:
        return [replace(mem(ctx, "elementwise", (11 * e + 8) * rf, "expert_clamp_bwd"), host_ops=9)]
    return [mem(ctx, "elementwise", 2 * e * rf, "expert_clamp_gate"),
            mem(ctx, "elementwise", 2 * e * rf, "expert_clamp_linear"),
            mem(ctx, "elementwise", 4 * e * rf, "expert_clamp_cat"),
            mem(ctx, "elementwise", e, "expert_act_offset_h2d"), host_sync()]
