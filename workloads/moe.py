"""Mixture-of-experts, multi-head latent attention, multi-token prediction and windowed
attention: the model-spec blocks and their parameter / FLOPs formulas.

The spec blocks are contracts shared with scenario files and presets:

- ``moe: {experts, top_k, shared_experts, expert_ffn_hidden, shared_ffn_hidden,
  dense_layers | layer_pattern, router: softmax|sigmoid|sqrtsoftplus, latent_size,
  hash_layers}``
- ``attention: {kind: mha|gqa|mla, q_lora_rank, kv_lora_rank, qk_nope_head_dim,
  qk_rope_head_dim, v_head_dim}``; ``kind: dsv4`` (DeepSeek-V4's compressed sparse /
  heavily compressed attention, with ``head_dim, o_lora_rank, o_groups, window,
  compress_ratios, index_heads, index_head_dim, index_topk, sparse_ratio``): workloads/dsv4.py.
- ``sliding_window: {size, period, kind: sliding|chunked}``: in every group of ``period``
  layers all but the last use the window (gpt-oss: period 2, every other layer;
  Llama 4: chunked attention on three layers of four).
- ``mtp_layers``: DeepSeek-V3's multi-token-prediction modules (section 2.2 of its report):
  each is an RMSNorm pair, a (2h, h) projection and one transformer layer; embedding and
  output head are shared with the main model. In a hybrid model the module's layers follow
  its own pattern (``mtp_pattern``, Megatron-Core ``mtp_hybrid_override_pattern``: "*E" is
  one attention and one MoE sub-layer); ``mtp_repeated`` (``mtp_use_repeated_layer``) runs
  ``mtp_layers`` passes through ONE module: its weights once, its compute per pass.
- ``moe.latent_size``: LatentMoE (Megatron-Core ``moe_latent_size``,
  megatron/core/transformer/moe/moe_layer.py): the router and the shared experts read the
  hidden state; ``fc1_latent_proj`` (h -> latent, replicated over TP, ``parallel_mode
  "duplicated"``) runs before the dispatch, so permutation, dispatch, the routed experts
  (latent -> ffn -> latent, experts.py / mlp.py ``is_expert``) and the combine move and
  multiply latent-sized tokens; ``fc2_latent_proj`` (latent -> h) runs after the combine.

Parameter counts follow the published module shapes (DeepSeek-V3 / Kimi K2 MLA, the
HF ``config.json`` of each model). The formulas are plain sums of matrix sizes, written
out per module below so that each can be checked by hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workloads import dsv4 as _dsv4
from workloads import mamba as _mamba

if TYPE_CHECKING:
    from workloads.model import ModelSpec


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MoESpec(_Spec):
    """Routed experts (SwiGLU when the model is gated), ``top_k`` per token, plus
    ``shared_experts`` that every token passes through."""
    experts: int = Field(gt=0)
    top_k: int = Field(gt=0)
    shared_experts: int = Field(default=0, ge=0)
    expert_ffn_hidden: int = Field(gt=0)
    shared_ffn_hidden: int | None = Field(default=None, gt=0)   # default: expert_ffn_hidden
    dense_layers: int = Field(default=0, ge=0)                  # the first k layers are dense
    layer_pattern: tuple[int, ...] | None = None                # 1 = MoE layer, one per layer
    # sqrtsoftplus: DeepSeek-V4's sqrt(softplus(logit)) scores, a score-correction bias
    # like sigmoid's.
    router: Literal["softmax", "sigmoid", "sqrtsoftplus"] = "softmax"
    # The first k MoE layers route by a fixed table of the token id (DeepSeek-V4
    # num_hash_layers): their router GEMM still weights the experts, no bias, no top-k.
    hash_layers: int = Field(default=0, ge=0)
    # Group-limited routing (DeepSeek-V3 n_group / topk_group): experts in router_groups
    # groups, each token's top_k chosen inside its best router_group_topk groups.
    router_groups: int = Field(default=1, gt=0)
    router_group_topk: int | None = Field(default=None, gt=0)
    # LatentMoE (Megatron-Core moe_latent_size): routed experts work in this width.
    latent_size: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> MoESpec:
        if self.top_k > self.experts:
            raise ValueError(f"top_k {self.top_k} exceeds experts {self.experts}")
        if self.experts % self.router_groups or (self.router_group_topk or 0) > self.router_groups:
            raise ValueError(f"router_groups {self.router_groups} must divide the experts and "
                             f"be >= router_group_topk {self.router_group_topk}")
        if self.layer_pattern is not None:
            if self.dense_layers:
                raise ValueError("give dense_layers or layer_pattern, not both")
            if any(v not in (0, 1) for v in self.layer_pattern):
                raise ValueError("layer_pattern holds 0 (dense) or 1 (MoE) per layer")
        return self

    @property
    def shared_ffn(self) -> int:
        return self.shared_ffn_hidden or self.expert_ffn_hidden


class AttentionSpec(_Spec):
    """``mla``: DeepSeek-V2/V3 multi-head latent attention (Q through a rank-``q_lora_rank``
    bottleneck, K/V through a compressed ``kv_lora_rank`` latent plus a shared RoPE key).
    ``dsv4``: DeepSeek-V4's hybrid attention (workloads/dsv4.py)."""
    kind: Literal["mha", "gqa", "mla", "dsv4"] = "mha"
    q_lora_rank: int | None = Field(default=None, gt=0)    # None: a direct Q projection
    kv_lora_rank: int | None = Field(default=None, gt=0)
    qk_nope_head_dim: int | None = Field(default=None, gt=0)
    qk_rope_head_dim: int | None = Field(default=None, gt=0)
    v_head_dim: int | None = Field(default=None, gt=0)
    # kind dsv4 (HF config.json head_dim, o_lora_rank, o_groups, sliding_window,
    # compress_ratios, index_n_heads, index_head_dim, index_topk)
    head_dim: int | None = Field(default=None, gt=0)
    o_lora_rank: int | None = Field(default=None, gt=0)
    o_groups: int | None = Field(default=None, gt=0)
    window: int | None = Field(default=None, gt=0)
    compress_ratios: tuple[int, ...] | None = None
    index_heads: int | None = Field(default=None, gt=0)
    index_head_dim: int | None = Field(default=None, gt=0)
    index_topk: int | None = Field(default=None, gt=0)
    sparse_ratio: int = Field(default=4, gt=1)   # the ratio whose layers run the indexer

    @model_validator(mode="after")
    def _check(self) -> AttentionSpec:
        need = {"mla": ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"),
                "dsv4": ("q_lora_rank", "qk_rope_head_dim", "head_dim", "o_lora_rank", "o_groups",
                         "window", "compress_ratios", "index_heads", "index_head_dim",
                         "index_topk")}.get(self.kind, ())
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"kind {self.kind} needs {', '.join(missing)}")
        dsv4_only = ("head_dim", "o_lora_rank", "o_groups", "window", "compress_ratios",
                     "index_heads", "index_head_dim", "index_topk")
        stray = [k for k in dsv4_only if self.kind != "dsv4" and getattr(self, k) is not None]
        if stray:
            raise ValueError(f"{', '.join(stray)} belong to kind dsv4, not {self.kind}")
        if self.kind == "dsv4":
            self._check_dsv4()
        return self

    def _check_dsv4(self) -> None:
        bad = [r for r in self.compress_ratios if r < 0 or r == 1]
        if bad:
            raise ValueError(f"compress_ratios hold 0 (window only) or a ratio >= 2, not {bad[0]}")
        if self.qk_rope_head_dim >= self.head_dim:
            raise ValueError(f"qk_rope_head_dim {self.qk_rope_head_dim} must be below head_dim "
                             f"{self.head_dim}")

    @property
    def qk_head_dim(self) -> int:
        return (self.qk_nope_head_dim or 0) + (self.qk_rope_head_dim or 0)


class SlidingWindow(_Spec):
    size: int = Field(gt=0)
    period: int = Field(default=2, gt=0)
    kind: Literal["sliding", "chunked"] = "sliding"


# ----------------------------------------------------------------------------- layers

def is_moe_layer(m: ModelSpec, i: int) -> bool:
    """Layer ``i`` (0-based, main model) has routed experts."""
    if m.moe is None:
        return False
    if m.hybrid_pattern is not None:
        return _mamba.kind(m, i) == _mamba.MOE
    if m.moe.layer_pattern is not None:
        return bool(m.moe.layer_pattern[i])
    return i >= m.moe.dense_layers


def is_window_layer(m: ModelSpec, i: int) -> bool:
    w = m.sliding_window
    return w is not None and (i % w.period) != w.period - 1


def kv_len(m: ModelSpec, i: int) -> float:
    """Keys each query attends in layer ``i`` under the non-causal (PaLM) FLOPs convention:
    the sequence, or the window / chunk where the layer has one."""
    if is_window_layer(m, i):
        return float(min(m.sliding_window.size, m.seq_len))
    return float(m.seq_len)


def mla(m: ModelSpec) -> AttentionSpec | None:
    return m.attention if m.attention is not None and m.attention.kind == "mla" else None


def layer_kind(m: ModelSpec, i: int) -> tuple:
    """What sets layer ``i``'s kernels: MoE or not, windowed or not, and under DSV4
    attention its compression ratio and whether it routes by hash."""
    if _dsv4.dsv4(m) is None:
        return is_moe_layer(m, i), is_window_layer(m, i)
    return is_moe_layer(m, i), _dsv4.ratio(m, i), is_hash_layer(m, i)


def is_hash_layer(m: ModelSpec, i: int) -> bool:
    """Layer ``i`` is one of the first ``moe.hash_layers`` MoE layers, which route by the
    token id's table."""
    return is_moe_layer(m, i) and i < m.moe.dense_layers + m.moe.hash_layers


def attention_params(m: ModelSpec) -> int:
    """Projection weights of one attention layer (with their biases and inner norms)."""
    h, a = m.hidden, m.heads
    att = mla(m)
    if _dsv4.dsv4(m) is not None:
        raise ValueError("DSV4 attention differs by layer: use layer_params")
    if att is None:
        qk_norm = 2 * m.head_dim if m.qk_norm else 0
        return (h * m.qkv_out + a * m.head_dim * h + int(m.bias) * (m.qkv_out + h) + qk_norm)
    q = a * att.qk_head_dim
    q_proj = (h * att.q_lora_rank + att.q_lora_rank + att.q_lora_rank * q) if att.q_lora_rank \
        else h * q
    kv_down = h * (att.kv_lora_rank + att.qk_rope_head_dim) + att.kv_lora_rank   # + latent norm
    kv_up = att.kv_lora_rank * a * (att.qk_nope_head_dim + att.v_head_dim)
    return q_proj + kv_down + kv_up + a * att.v_head_dim * h


def mlp_params(m: ModelSpec, ffn: int, width: int | None = None) -> int:
    """An MLP ``width`` (default hidden) -> ffn -> ``width``, gated when the model is."""
    h, b = width or m.hidden, int(m.bias)
    return h * ffn * (3 if m.gated else 2) + b * (ffn * (2 if m.gated else 1) + h)


def token_width(m: ModelSpec) -> int:
    """Width of the tokens the routed experts see: the latent size under LatentMoE (the
    permutation, dispatch, expert GEMMs and combine work in it), else the hidden size."""
    return (m.moe.latent_size if m.moe is not None and m.moe.latent_size else None) or m.hidden


def expert_mlp_params(m: ModelSpec) -> int:
    """One routed expert (in the latent width under LatentMoE)."""
    return mlp_params(m, m.moe.expert_ffn_hidden, token_width(m))


def latent_proj_params(m: ModelSpec) -> int:
    """LatentMoE's fc1_latent_proj (h -> latent) and fc2_latent_proj (latent -> h) of one
    MoE layer, with their biases where the model has them (moe_layer.py, TELinear)."""
    if m.moe is None or not m.moe.latent_size:
        return 0
    h, lat, b = m.hidden, m.moe.latent_size, int(m.bias)
    return 2 * h * lat + b * (lat + h)


def router_params(m: ModelSpec, i: int | None = None) -> int:
    e = m.moe.experts
    # Linear router; a sigmoid / sqrtsoftplus router carries a per-expert score-correction
    # bias (DeepSeek-V3 aux-loss-free balancing) except in hash-routed layers, a biased
    # model a router bias.
    corr = m.moe.router != "softmax" and not (i is not None and is_hash_layer(m, i))
    return m.hidden * e + (e if corr or m.bias else 0)


def norm_params(m: ModelSpec) -> int:
    return m.hidden * (2 if m.norm == "layernorm" else 1)


def _mlp_block_params(m: ModelSpec, i: int, active: bool) -> int:
    """The MLP half of layer ``i``: a dense MLP, or router, routed and shared experts."""
    if not is_moe_layer(m, i):
        return mlp_params(m, m.ffn)
    moe = m.moe
    routed = (moe.top_k if active else moe.experts) * expert_mlp_params(m)
    return (router_params(m, i) + latent_proj_params(m) + routed
            + moe.shared_experts * mlp_params(m, moe.shared_ffn))


def hybrid_layer_params(m: ModelSpec, i: int, active: bool = False) -> int:
    """One sub-layer of a hybrid model: its pre-norm and its mixer, attention or MLP."""
    k = _mamba.kind(m, i)
    if k == _mamba.MAMBA:
        body = _mamba.mixer_params(m)
    elif k == _mamba.ATTENTION:
        body = attention_params(m)
    else:
        body = _mlp_block_params(m, i, active)
    return norm_params(m) + body


def layer_params(m: ModelSpec, i: int, active: bool = False) -> int:
    """Parameters of layer ``i``; ``active``: those one token touches (top-k experts)."""
    if m.hybrid_pattern is not None:
        return hybrid_layer_params(m, i, active)
    if _dsv4.dsv4(m) is not None:
        attn = _dsv4.attention_params(m, i) + _dsv4.hc_layer_params(m)
    else:
        attn = attention_params(m)
    return attn + 2 * norm_params(m) + _mlp_block_params(m, i, active)


def expert_params(m: ModelSpec, i: int) -> int:
    """Routed-expert weights of layer ``i`` (what expert parallelism shards)."""
    if not is_moe_layer(m, i):
        return 0
    return m.moe.experts * expert_mlp_params(m)


def mtp_layer_ids(m: ModelSpec) -> list[int]:
    """Layer indices of one MTP module: the model's last layer (DeepSeek-V3: one
    transformer layer like it), or in a hybrid model the sub-layers of ``mtp_pattern``,
    numbered after the main model's (``workloads.mamba.kind`` reads them there)."""
    if m.hybrid_pattern is not None and m.mtp_pattern:
        return list(range(m.layers, m.layers + len(m.mtp_pattern)))
    att = _dsv4.dsv4(m)
    if att is not None and len(att.compress_ratios) > m.layers:
        return [m.layers]          # DSV4: the MTP layer's own compress_ratios entry
    return [m.layers - 1]


def mtp_modules(m: ModelSpec) -> int:
    """MTP modules that hold weights: one shared by every pass under ``mtp_repeated``."""
    return min(1, m.mtp_layers) if m.mtp_repeated else m.mtp_layers


def mtp_params(m: ModelSpec, active: bool = False) -> int:
    """Multi-token prediction modules (embedding and output head shared): two norms, the
    (2h -> h) projection, the module's layers, a final norm (Megatron-Core
    MultiTokenPredictionLayer: enorm, hnorm, eh_proj, the layers, final_layernorm)."""
    h = m.hidden
    layers = sum(layer_params(m, i, active) for i in mtp_layer_ids(m))
    return mtp_modules(m) * (3 * norm_params(m) + 2 * h * h + layers + _dsv4.hc_head_params(m))


def mtp_expert_params(m: ModelSpec) -> int:
    """Routed-expert weights of the MTP modules (sharded over expert parallelism)."""
    return mtp_modules(m) * sum(expert_params(m, i) for i in mtp_layer_ids(m))


def embedding_params(m: ModelSpec) -> tuple[int, int]:
    """(input embedding incl. positions, untied output layer)."""
    pos = m.seq_len * m.hidden if m.learned_positions else 0
    return m.vocab * m.hidden + pos, (0 if m.tied_embeddings else m.vocab * m.hidden)


def total_params(m: ModelSpec) -> int:
    """Main model (MTP modules excluded, as DeepSeek's 671B is)."""
    embed, out = embedding_params(m)
    return (sum(layer_params(m, i) for i in range(m.layers)) + embed + out + norm_params(m)
            + _dsv4.hc_head_params(m))


def active_params(m: ModelSpec, embedding: bool = True) -> int:
    """Parameters one token uses in the main model. ``embedding=False`` leaves out the
    input-embedding table (a lookup), as OpenAI's gpt-oss model card counts."""
    embed, out = embedding_params(m)
    out = out or m.vocab * m.hidden          # tied: the output head is still a GEMM
    layers = sum(layer_params(m, i, active=True) for i in range(m.layers))
    return (layers + out + norm_params(m) + _dsv4.hc_head_params(m)
            + (embed if embedding else 0))


# ----------------------------------------------------------------------------- FLOPs

def _mlp_matmul_params(m: ModelSpec, i: int) -> int:
    h, mult = m.hidden, (3 if m.gated else 2)
    if not is_moe_layer(m, i):
        return h * m.ffn * mult
    moe = m.moe
    lat = moe.latent_size
    routed = moe.top_k * moe.expert_ffn_hidden * mult * (lat or h) + (2 * h * lat if lat else 0)
    return h * moe.experts + routed + h * mult * moe.shared_experts * moe.shared_ffn


def matmul_params(m: ModelSpec, i: int) -> int:
    """Weights of layer ``i`` that one token multiplies (GEMMs only: no norms, biases)."""
    h, a = m.hidden, m.heads
    k = _mamba.kind(m, i)
    if k == _mamba.MAMBA:
        return _mamba.mixer_matmul_params(m)
    if k in (_mamba.MLP, _mamba.MOE):
        return _mlp_matmul_params(m, i)
    if _dsv4.dsv4(m) is not None:
        return (_dsv4.attention_matmul_params(m, i) + _dsv4.hc_matmul_params(m)
                + _mlp_matmul_params(m, i))
    att = mla(m)
    if att is None:
        attn = h * m.qkv_out + a * m.head_dim * h
    else:
        q = a * att.qk_head_dim
        attn = (h * att.q_lora_rank + att.q_lora_rank * q if att.q_lora_rank else h * q) \
            + h * (att.kv_lora_rank + att.qk_rope_head_dim) \
            + att.kv_lora_rank * a * (att.qk_nope_head_dim + att.v_head_dim) + a * att.v_head_dim * h
    return attn if k == _mamba.ATTENTION else attn + _mlp_matmul_params(m, i)


def _attention_per_token(m: ModelSpec, i: int) -> float:
    """Half the forward QK^T + AV FLOPs of one token in layer ``i`` (non-causal)."""
    if _mamba.kind(m, i) not in (None, _mamba.ATTENTION):
        return 0.0
    if _dsv4.dsv4(m) is not None:
        return _dsv4.attention_per_token(m, i)
    att = mla(m)
    d_qk, d_v = (att.qk_head_dim, att.v_head_dim) if att else (m.head_dim, m.head_dim)
    return kv_len(m, i) * m.heads * (d_qk + d_v)


def flops_per_token(m: ModelSpec) -> float:
    """Training model FLOPs per token (forward + backward, no recompute): 6 x (active GEMM
    weights + the attention score/context products), PaLM appendix B convention. MTP
    modules add their projection, layer and a second pass through the output head."""
    h = m.hidden
    per = sum(matmul_params(m, i) + _attention_per_token(m, i) for i in range(m.layers))
    per += h * m.vocab
    if m.mamba is not None:     # the scan's matmuls, 3 x forward (workloads/mamba.py)
        scan = _mamba.ssd_flops(m.mamba, 1.0, m.mamba.heads, m.mamba.groups)[0]
        per += m.hybrid_pattern.count(_mamba.MAMBA) * scan / 2
    if m.mtp_layers:
        ids = mtp_layer_ids(m)
        body = sum(matmul_params(m, i) + _attention_per_token(m, i) for i in ids)
        if m.mamba is not None:
            scan = _mamba.ssd_flops(m.mamba, 1.0, m.mamba.heads, m.mamba.groups)[0]
            body += sum(_mamba.kind(m, i) == _mamba.MAMBA for i in ids) * scan / 2
        per += m.mtp_layers * (2 * h * h + body + h * m.vocab)
    return 6.0 * per
