"""Hybrid Mamba-2 / attention / MLP / MoE models (Nemotron-H, Nemotron 3): the layer
pattern, the Mamba-2 mixer's parameters and FLOPs, and its kernels on one TP rank.

``hybrid_pattern`` is Megatron-Core's ``hybrid_layer_pattern`` (``hybrid_override_pattern``):
one character per layer, each ONE sub-layer with its own pre-norm and residual:
``M`` Mamba-2 mixer, ``*`` self-attention, ``-`` dense MLP, ``E`` MoE MLP
(megatron/core/ssm/mamba_hybrid_layer_allocation.py ``Symbols``).

The mixer (Megatron-Core ``MambaMixer``, megatron/core/ssm/mamba_mixer.py, and the
``mamba_ssm`` kernels it calls, training path ``mamba_split_conv1d_scan_combined``), with
d_inner = heads x head_dim, G groups, N state size, K conv width, Q chunk size:

- ``in_proj``: column-parallel linear (TE LayerNormColumnParallelLinear: the layer's norm is
  fused into it) h -> 2 d_inner + 2 G N + heads (z, x, B, C, dt);
- depthwise causal conv1d (width K, with bias) over the d_inner + 2 G N channels of x, B, C
  followed by SiLU (memory-bound);
- the SSD chunked scan (``_mamba_chunk_scan_combined_fwd``): chunk cumsum of dt A, chunk
  states B^T (dt x), state passing between chunks, C B^T per chunk and group, chunk scan
  (intra-chunk causal (C B^T o decay) x, inter-chunk C states, D skip, z gate);
- grouped RMSNorm over d_inner (``ExtendedRMSNorm``, group size d_inner / G);
- ``out_proj``: row-parallel linear d_inner -> h.

TP splits heads and groups (``nheads % tp == 0``, ``ngroups % tp == 0``); with sequence
parallelism the in_proj all-gathers its input and the out_proj reduce-scatters its output,
as attention does. Parameters of one mixer: in_proj, conv weight and bias, dt_bias, A_log,
D (one per head), the norm weight (d_inner), out_proj, plus the fused pre-norm weight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from workloads.model import ModelSpec

MAMBA, ATTENTION, MLP, MOE = "M", "*", "-", "E"
SYMBOLS = (MAMBA, ATTENTION, MLP, MOE)


class MambaSpec(BaseModel):
    """Mamba-2 mixer shape (Megatron-Core ``mamba_num_heads``, ``mamba_head_dim``,
    ``mamba_state_dim``, ``mamba_num_groups``, ``d_conv`` 4, ``chunk_size`` 128: the
    MambaMixer defaults and Megatron-Bridge's ``DEFAULT_MAMBA_CHUNK_SIZE``)."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    heads: int = Field(gt=0)
    head_dim: int = Field(default=64, gt=0)
    state_dim: int = Field(default=128, gt=0)
    groups: int = Field(default=8, gt=0)
    conv_kernel: int = Field(default=4, gt=0)
    chunk_size: int = Field(default=128, gt=0)

    @property
    def d_inner(self) -> int:
        return self.heads * self.head_dim

    @property
    def conv_dim(self) -> int:
        """Channels of the causal conv1d: x, B and C."""
        return self.d_inner + 2 * self.groups * self.state_dim

    @property
    def in_proj_out(self) -> int:
        """in_proj output width: z, x, B, C and dt."""
        return 2 * self.d_inner + 2 * self.groups * self.state_dim + self.heads


def check_pattern(pattern: str, layers: int, has_mamba: bool, has_moe: bool) -> None:
    """Raise ValueError where the pattern cannot describe the model."""
    bad = sorted({c for c in pattern if c not in SYMBOLS})
    if bad:
        raise ValueError(f"hybrid_pattern holds {bad}: use M (Mamba), * (attention), "
                         f"- (MLP), E (MoE), one per layer")
    if len(pattern) != layers:
        raise ValueError(f"hybrid_pattern has {len(pattern)} layers for layers: {layers}")
    if MAMBA in pattern and not has_mamba:
        raise ValueError("hybrid_pattern has Mamba layers (M): give the mamba block")
    if MOE in pattern and not has_moe:
        raise ValueError("hybrid_pattern has MoE layers (E): give the moe block")


def check_mtp_pattern(pattern: str, has_mamba: bool, has_moe: bool) -> None:
    """Raise ValueError where an MTP module's pattern cannot describe it."""
    try:
        check_pattern(pattern, len(pattern), has_mamba, has_moe)
    except ValueError as exc:
        raise ValueError(str(exc).replace("hybrid_pattern", "mtp_pattern")) from None


def kind(m: ModelSpec, i: int) -> str | None:
    """The sub-layer of layer ``i`` in a hybrid model (None: a full transformer layer).
    Indices from ``m.layers`` on are the MTP module's sub-layers (``mtp_pattern``,
    workloads/moe.py ``mtp_layer_ids``)."""
    if not m.hybrid_pattern:
        return None
    if i >= m.layers and m.mtp_pattern:
        return m.mtp_pattern[(i - m.layers) % len(m.mtp_pattern)]
    return m.hybrid_pattern[i]


def counts(m: ModelSpec) -> dict[str, int]:
    return {s: m.hybrid_pattern.count(s) for s in SYMBOLS}


def mtp_counts(m: ModelSpec) -> dict[str, int]:
    """Sub-layers of the MTP passes: the MTP pattern once per pass (``mtp_layers``)."""
    pattern = m.mtp_pattern or ""
    return {s: pattern.count(s) * m.mtp_layers for s in SYMBOLS}


# ----------------------------------------------------------------------------- parameters

def mixer_params(m: ModelSpec) -> int:
    """One Mamba-2 mixer without its pre-norm (shapes of MambaMixer.__init__)."""
    s, h = m.mamba, m.hidden
    b = int(m.bias)
    in_proj = h * s.in_proj_out + b * s.in_proj_out
    conv = s.conv_dim * s.conv_kernel + s.conv_dim
    per_head = 3 * s.heads                       # dt_bias, A_log, D
    return in_proj + conv + per_head + s.d_inner + s.d_inner * h + b * h


def mixer_matmul_params(m: ModelSpec) -> int:
    """GEMM weights one token multiplies in a Mamba layer (in_proj, out_proj)."""
    s = m.mamba
    return m.hidden * s.in_proj_out + s.d_inner * m.hidden


def ssd_flops(s: MambaSpec, tokens: float, heads: float, groups: float) -> tuple[float, float]:
    """(forward, backward) matmul FLOPs of the SSD chunked scan over ``tokens`` (whole
    chunks) for ``heads`` heads and ``groups`` B/C groups, from the kernels' products
    (mamba_ssm ops/triton/ssd_*.py): Q chunk, N state, P head dim.

    Forward: C B^T per chunk and group 2 L Q N G (``_bmm_chunk_fwd``, full Q x Q);
    chunk states B^T x 2 L N P H (``_chunk_state_fwd``); chunk scan, intra-chunk causal
    (C B^T) x L Q P H (only the blocks on and below the diagonal) and inter-chunk
    C states 2 L N P H (``_chunk_scan_fwd``).
    Backward (``_mamba_chunk_scan_combined_bwd``): C B^T and the chunk states recomputed
    (2 L Q N G + 2 L N P H); dstates 2 L N P H; dx from (C B^T)^T dout and B dstates
    (L Q P H + 2 L N P H); dB 2 L N P H; dC 2 L N P H; d(C B^T) = dout x^T L Q P H and the
    stable ddA (dout x^T o C B^T) L Q P H; the two ``_bmm_chunk_bwd`` 4 L Q N G."""
    L, Q, N, P = tokens, s.chunk_size, s.state_dim, s.head_dim
    qng, npH, qpH = L * Q * N * groups, L * N * P * heads, L * Q * P * heads
    return 2 * qng + 4 * npH + qpH, 6 * qng + 10 * npH + 3 * qpH


def flops_per_token(m: ModelSpec) -> float:
    """Training FLOPs of one token in one Mamba layer (forward + backward, PaLM
    convention: 6 x the GEMM weights, and 3 x the scan's forward matmuls per token,
    which depend on the chunk, not on the sequence length)."""
    s = m.mamba
    fwd, _ = ssd_flops(s, 1.0, s.heads, s.groups)
    return 6.0 * mixer_matmul_params(m) + 3.0 * fwd


def megatron_bridge_flops_per_token(m: ModelSpec) -> float:
    """Model FLOPs per token as Megatron-Bridge counts them for hybrid models (its
    published "Model TFLOP/sec/GPU"): ``hybrid_flops`` in
    src/megatron/bridge/training/utils/flop_utils.py (HEAD 067f987, 2026). Its
    conventions: Mamba layers with d_in = 2 x hidden whatever the heads (in_proj
    2 h (2 d_in + 2 G N + heads), scan 7 d_in N, out_proj 2 d_in h), attention
    projections 4 h (a d)(1 + g/a) and a causal core 2 (a d) s, MLP and MoE with
    4 h f per expert (x 3/2 when gated; LatentMoE: 4 l f per routed expert and 4 h l for
    the two latent projections, ``moe_layer_flops``), logits 2 h V (x (1 + MTP)), all x 3.
    The layer counts are Megatron-Core's ``get_hybrid_layer_counts`` of the unified
    pattern Megatron-Bridge's HybridModelProvider builds (v0.6.0 hybrid_provider.py: the
    main pattern, then the MTP pattern once per MTP pass, ``mtp_num_layers`` copies)."""
    h, s = m.hidden, m.seq_len
    c = counts(m)
    c = {k: c[k] + v for k, v in mtp_counts(m).items()}
    a, d, g = m.heads, m.head_dim, m.kv_heads_
    attn = 4 * h * a * d * (1 + g / a) + 2 * a * d * s
    sp = m.mamba
    mamba = 0.0
    if sp is not None:
        d_in = 2 * h
        mamba = 2 * h * (2 * d_in + 2 * sp.groups * sp.state_dim + sp.heads) + 7 * d_in * sp.state_dim \
            + 2 * d_in * h
    scale = 1.5 if m.gated else 1.0
    mlp = 4 * m.ffn * scale * h
    moe = 0.0
    if m.moe is not None:
        shared = m.moe.shared_experts * m.moe.shared_ffn
        lat = m.moe.latent_size
        moe = 4 * (lat or h) * m.moe.expert_ffn_hidden * m.moe.top_k * scale + 4 * h * shared * scale
        moe += 4 * h * lat if lat else 0
    logits = 2 * h * m.vocab * (1 + m.mtp_layers)
    return 3.0 * (c[ATTENTION] * attn + c[MAMBA] * mamba + c[MLP] * mlp + c[MOE] * moe + logits)
