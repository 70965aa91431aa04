"""Kernels of one Mamba-2 mixer on one TP rank, training (forward, backward).

Megatron-Core's training path (megatron/core/ssm/mamba_mixer.py ``forward`` and
``_ssm_training``, use_mem_eff_path): ``in_proj`` (TE LayerNormColumnParallelLinear, the
pre-norm fused in), ``rearrange(zxBCdt, "l b d -> b l d").contiguous()``,
``mamba_split_conv1d_scan_combined`` (mamba_ssm ops/triton/ssd_combined.py: the causal
conv1d and SiLU of x, B, C, then ``_mamba_chunk_scan_combined_fwd`` with the z gate), the
transpose back, the grouped RMSNorm (``ExtendedRMSNorm``) and ``out_proj``. The fused
function saves only its input and output and recomputes the conv in its backward, then
runs ``_mamba_chunk_scan_combined_bwd`` (which recomputes C B^T and the chunk states).

The two transposes are copies only with micro-batch > 1 (with b = 1 the (l, 1, d) tensor
is already contiguous as (1, l, d)). The SSD kernels are Triton batched matmuls over
chunks, in 16-bit (the scan is outside Transformer Engine's FP8 autocast); chunk states
are fp32 (``states_in_fp32``), C B^T is fp32. Each is an ``ssd`` op of its FLOPs
(workloads/mamba.py ``ssd_flops``) and bytes, priced at the measured share of the
roofline that mamba_ssm's Triton SSD kernels reach (hw_models/compute.py ``ssd``).
"""

from __future__ import annotations

from workloads.graph import Compute
from workloads.layer_attention import bf16_context
from workloads.layers import LayerContext, Op, gemm, gemm_bwd, mem


def _local(ctx: LayerContext) -> tuple[int, int, int, int, int]:
    """(local heads, local groups, local d_inner, local conv channels, local in_proj width)."""
    s, t = ctx.model.mamba, ctx.tp
    H, G = s.heads // t, s.groups // t
    d = H * s.head_dim
    conv = d + 2 * G * s.state_dim
    return H, G, d, conv, 2 * d + 2 * G * s.state_dim + H


def _chunks(ctx: LayerContext) -> float:
    """Token positions the scan works on: every sequence padded to whole chunks."""
    q = ctx.model.mamba.chunk_size
    return ctx.micro_batch * -(-ctx.model.seq_len // q) * q


def chunk_scan_fwd(L: float, Q: int, H: int, P: int, N: int, G: int, e: float,
                   gated: bool = True, cb_bytes: float = 4) -> tuple[float, float]:
    """(FLOPs, bytes) of mamba_ssm's ``_chunk_scan_fwd`` over L token positions (padded
    to chunks of Q) with H heads of P channels, state N, G groups, e-byte activations: the
    causal half of (C B^T * decay) x per chunk (L Q P H) and C times the chunk states
    (2 L N P H); reads C B^T (``cb_bytes`` an element), x, C and the 16-bit states, writes
    the output; ``gated`` reads z too and writes the gated and the ungated output."""
    d, states = L * H * P, L / Q * H * P * N
    nbytes = cb_bytes * L * Q * G + e * (d + L * G * N + states) + e * d
    return L * Q * P * H + 2 * L * N * P * H, nbytes + (2 * e * d if gated else 0.0)


def ssd_forward_ops(L: float, Q: int, H: int, P: int, N: int, G: int, e: float,
                    dtype: str, gated: bool = True) -> list[Compute]:
    """The SSD chunked scan's forward kernels over L token positions (padded to chunks
    of Q): chunk cumsum (dt, fp32), chunk states (read x, B; write fp32 states), state
    passing (read fp32, write 16-bit states), C B^T (read B, C; write fp32 Q x Q per
    chunk and group), chunk scan (``chunk_scan_fwd``)."""
    states, bc = L / Q * H * P * N, L * G * N

    def stream(nbytes: float, name: str) -> Compute:
        return Compute("elementwise", 0.0, float(nbytes), dtype, name=name)

    def ssd(name: str, flops: float, nbytes: float) -> Compute:
        return Compute("ssd", flops, nbytes, dtype, None, name=name)

    return [stream((e + 4 + 4) * L * H, "ssd_chunk_cumsum"),
            ssd("ssd_chunk_state", 2 * L * N * P * H, e * (L * H * P + bc) + 4 * states),
            stream((4 + e) * states, "ssd_state_passing"),
            ssd("ssd_bmm_chunk", 2 * L * Q * N * G, 2 * e * bc + 4 * L * Q * G),
            ssd("ssd_chunk_scan", *chunk_scan_fwd(L, Q, H, P, N, G, e, gated))]


def ssd_forward(ctx: LayerContext) -> list[Op]:
    """``ssd_forward_ops`` of the local heads and groups, gated by z (Megatron's fused
    ``mamba_split_conv1d_scan_combined``), in 16-bit."""
    s = ctx.model.mamba
    H, G, _, _, _ = _local(ctx)
    return ssd_forward_ops(_chunks(ctx), s.chunk_size, H, s.head_dim, s.state_dim, G,
                           ctx.act_bytes, bf16_context(ctx).dtype)


def ssd_backward_ops(L: float, Q: int, H: int, P: int, N: int, G: int, e: float,
                     dtype: str, gated: bool = True) -> list[Compute]:
    """The kernels of mamba_ssm's ``_mamba_chunk_scan_combined_bwd`` (ops/triton/
    ssd_combined.py, state-spaces/mamba HEAD e9594ce, 2026) over L token positions (padded
    to chunks of Q), in launch order, each with the bytes it reads and writes: x, dout, z,
    the gated output and dx e bytes an element (d = L H P each), B, C (bc = L G N),
    the chunk states (S = L / Q H P N), C B^T and its gradient in fp32 (cb = L Q G).

    - recompute: ``dt.clone`` and ``_chunk_cumsum_fwd`` (dt in, dA cumsum and dt out in
      fp32), ``_bmm_chunk_fwd`` (fp32 C B^T), ``_chunk_state_fwd`` (fp32 states) and
      ``_state_passing_fwd`` with no ``out_dtype``: fp32 in, fp32 out (8 S);
    - ``_chunk_scan_bwd_dz`` (gated): reads x, z, the saved output and dout, writes dz and
      the gated dout (6 e d);
    - ``_chunk_scan_bwd_dstates``: C and dout in, fp32 dstates out;
    - ``_state_passing_bwd``: fp32 states and dstates in, dstates and states out in the
      state dtype (12 S at e = 2);
    - ``_chunk_scan_chunk_state_bwd_dx``: x, B, fp32 C B^T, dout, dstates in, dx out;
    - ``_chunk_state_bwd_db`` / ``_chunk_scan_bwd_dC``: x (dout), dstates (states), B (C)
      in, dB (dC) out in fp32 (``nsplits`` = 1 at these head counts), each followed by
      its ``.sum(2)`` (a torch reduction: fp32 in and out, 8 bc);
    - ``_chunk_scan_bwd_dcb``: x and dout in, fp32 d(C B^T) out, then its ``.sum(2)``
      (8 cb);
    - two ``_bmm_chunk_bwd`` (dB += d(C B^T) C, dC += d(C B^T)^T B): the operand, the
      fp32 d(C B^T) and the fp32 residual in, the 16-bit gradient out;
    - ``_chunk_scan_bwd_ddAcs_stable``: x, dout, fp32 C B^T in, fp32 partial ddA
      (L H Q / 16) out and summed;
    - the ddA bookkeeping (the dB and dC kernels' ddA workspaces, flip / cumsum / flip,
      two adds) and ``_chunk_cumsum_bwd``: fp32 passes over L H, about 68 bytes a
      position and head, eight small kernels.

    FLOPs: those of workloads/mamba.py ``ssd_flops`` split over the kernels that do them;
    the matmul kernels are ``ssd`` ops (the measured share of the roofline), the
    reductions and passes memory-bound ``elementwise`` ops."""
    d, bc, S, cb, lh = L * H * P, L * G * N, L / Q * H * P * N, L * Q * G, L * H
    qng, npH, qpH = L * Q * N * G, L * N * P * H, L * Q * P * H

    def stream(name: str, nbytes: float, kernels: int = 1) -> Compute:
        return Compute("elementwise", 0.0, float(nbytes), dtype, name=name, host_ops=kernels)

    def ssd(name: str, flops: float, nbytes: float) -> Compute:
        return Compute("ssd", flops, nbytes, dtype, None, name=name)

    return [stream("ssd_bwd_chunk_cumsum", (2 * e + e + 8) * lh, 2),
            ssd("ssd_bwd_bmm_chunk_fwd", 2 * qng, 2 * e * bc + 4 * cb),
            ssd("ssd_bwd_chunk_state_fwd", 2 * npH, e * (d + bc) + 8 * lh + 4 * S),
            stream("ssd_bwd_state_passing_fwd", 8 * S),
            *([stream("ssd_bwd_dz", 6 * e * d)] if gated else []),
            ssd("ssd_bwd_dstates", 2 * npH, e * (bc + d) + 4 * lh + 4 * S),
            stream("ssd_bwd_state_passing", (4 + 4 + 2 * e) * S),
            ssd("ssd_bwd_dx", qpH + 2 * npH, 3 * e * d + e * bc + 4 * cb + e * S + 12 * lh),
            ssd("ssd_bwd_db", 2 * npH, e * (d + S + bc) + 4 * bc + 8 * lh),
            stream("ssd_bwd_db_sum", 8 * bc),
            ssd("ssd_bwd_dc", 2 * npH, e * (d + S + bc) + 4 * bc + 4 * lh),
            stream("ssd_bwd_dc_sum", 8 * bc),
            ssd("ssd_bwd_dcb", qpH, 2 * e * d + 4 * cb + 8 * lh),
            stream("ssd_bwd_dcb_sum", 8 * cb),
            ssd("ssd_bwd_bmm_chunk_db", 2 * qng, 2 * e * bc + 4 * bc + 4 * cb),
            ssd("ssd_bwd_bmm_chunk_dc", 2 * qng, 2 * e * bc + 4 * bc + 4 * cb),
            ssd("ssd_bwd_ddA_stable", qpH, 2 * e * d + 4 * cb + 8 * lh + 4 * lh * Q / 16),
            stream("ssd_bwd_ddA", 4 * lh * Q / 16 + 68 * lh, 8)]


def ssd_backward(ctx: LayerContext) -> list[Op]:
    """``ssd_backward_ops`` of the local heads and groups, gated by z, in 16-bit."""
    s = ctx.model.mamba
    H, G, _, _, _ = _local(ctx)
    return ssd_backward_ops(_chunks(ctx), s.chunk_size, H, s.head_dim, s.state_dim, G,
                            ctx.act_bytes, bf16_context(ctx).dtype)


def mamba_forward(ctx: LayerContext) -> list[Op]:
    """in_proj, transpose, conv1d + SiLU (read x, B, C, write them), the scan, transpose
    back, grouped RMSNorm (read, write d_inner), out_proj."""
    T, e, h = ctx.tokens, ctx.act_bytes, ctx.model.hidden
    _, _, d, conv, width = _local(ctx)
    copy = ctx.micro_batch > 1
    return [gemm(ctx, T, width, h, "mamba_in_proj"),
            *([mem(ctx, "elementwise", 2 * e * T * width, "mamba_in_transpose")] if copy else []),
            mem(ctx, "elementwise", 2 * e * T * conv, "mamba_conv1d"),
            *ssd_forward(ctx),
            *([mem(ctx, "elementwise", 2 * e * T * d, "mamba_out_transpose")] if copy else []),
            mem(ctx, "norm", 2 * e * T * d, "mamba_gated_norm"),
            gemm(ctx, T, h, d, "mamba_out_proj")]


def mamba_backward(ctx: LayerContext) -> list[Op]:
    """out_proj gradients, norm backward (read input and gradient, write gradient), the
    transpose's gradient, the fused function's backward (conv recomputed, the scan's
    backward, conv1d backward: read the gradient and input, write the input gradient),
    the in_proj transpose's gradient, in_proj gradients."""
    T, e, h = ctx.tokens, ctx.act_bytes, ctx.model.hidden
    _, _, d, conv, width = _local(ctx)
    copy = ctx.micro_batch > 1
    return [*gemm_bwd(ctx, T, h, d, "mamba_out_proj"),
            mem(ctx, "norm", 3 * e * T * d, "mamba_gated_norm_bwd"),
            *([mem(ctx, "elementwise", 2 * e * T * d, "mamba_out_transpose_bwd")] if copy else []),
            mem(ctx, "elementwise", 2 * e * T * conv, "mamba_conv1d_recompute"),
            *ssd_backward(ctx),
            mem(ctx, "elementwise", 3 * e * T * conv, "mamba_conv1d_bwd"),
            *([mem(ctx, "elementwise", 2 * e * T * width, "mamba_in_transpose_bwd")] if copy else []),
            *gemm_bwd(ctx, T, width, h, "mamba_in_proj")]
