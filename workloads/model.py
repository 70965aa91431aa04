"""Model zoo: transformer shapes and the published parameter / FLOPs formulas."""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hw_models.errors import ClusterSimError, UnknownPresetError
from hw_models.yamlio import read_packaged
from workloads import mamba as _mamba
from workloads import moe as _moe
from workloads.dsv4 import HyperConnections
from workloads.mamba import MambaSpec
from workloads.moe import AttentionSpec, MoESpec, SlidingWindow


class ModelSpec(BaseModel):
    """A dense decoder-only transformer. ``ffn_hidden`` is the MLP inner size (per gate
    for SwiGLU); ``kv_heads`` < ``heads`` is grouped-query attention."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    layers: int = Field(gt=0)
    hidden: int = Field(gt=0)
    heads: int = Field(gt=0)
    kv_heads: int | None = Field(default=None, gt=0)
    ffn_hidden: int | None = Field(default=None, gt=0)
    vocab: int = Field(gt=0)
    seq_len: int = Field(gt=0)
    activation: Literal["gelu", "swiglu", "squared_relu"] = "gelu"
    # Clamp of the gated activation's inputs (gpt-oss: ``swiglu_limit`` 7.0 in its
    # config.json; Megatron-Core ``activation_func_clamp_value``): the gate half is clamped
    # from above, the linear half to [-limit, limit] (workloads/moe_layers.py prices it).
    activation_clamp: float | None = Field(default=None, gt=0)
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    bias: bool = True                  # linear layers carry biases (GPT) or not (Llama)
    rope: bool = False                 # rotary positions (no learned position table)
    # No position encoding at all (Megatron-Core position_embedding_type "none": the
    # hybrid Mamba models, whose Mamba layers carry the order): no learned position table.
    no_positions: bool = False
    # Scaled rotary positions: "yarn" (gpt-oss: factor 32 over 4,096 positions; Megatron-Core
    # position_embedding_type "yarn"), which Megatron runs unfused (workloads/layer_attention.py).
    rope_scaling: Literal["yarn"] | None = None
    tied_embeddings: bool = True       # output layer shares the word-embedding matrix
    # Trained with dropout (GPT-3, the Megatron-LM papers: p = 0.1). Modern recipes
    # (Llama 3, Nemotron-4) set it to 0, and PyTorch then stores no masks.
    dropout: bool = True
    # Mixture of experts, attention variants, MTP, windows: workloads/moe.py, docs/moe.md.
    kv_channels: int | None = Field(default=None, gt=0)   # head dim when not hidden/heads
    qk_norm: bool = False              # per-head RMSNorm of Q and K (Qwen3)
    moe: MoESpec | None = None
    attention: AttentionSpec | None = None
    mtp_layers: int = Field(default=0, ge=0)
    # Hybrid models: the MTP module's own sub-layers (Megatron-Core
    # mtp_hybrid_override_pattern, e.g. "*E"), and whether the mtp_layers passes share ONE
    # module's weights (mtp_use_repeated_layer). workloads/moe.py, docs/moe.md.
    mtp_pattern: str | None = None
    mtp_repeated: bool = False
    sliding_window: SlidingWindow | None = None
    # Manifold-Constrained Hyper-Connections (DeepSeek-V4 hc_mult, hc_sinkhorn_iters): the
    # residual stream is ``copies`` x hidden wide (workloads/dsv4.py); with attention dsv4.
    hyper_connections: HyperConnections | None = None
    # Hybrid Mamba models (workloads/mamba.py, docs/moe.md): one character per layer,
    # M Mamba-2 mixer, * attention, - MLP, E MoE (Megatron-Core hybrid_layer_pattern).
    hybrid_pattern: str | None = None
    mamba: MambaSpec | None = None
    published_params_b: float | None = None
    published_active_params_b: float | None = None
    source: str = "inline"

    @model_validator(mode="after")
    def _shapes(self) -> ModelSpec:
        if self.kv_channels is None and self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.heads % self.kv_heads_:
            raise ValueError(f"heads {self.heads} is not divisible by kv_heads {self.kv_heads_}")
        self._hybrid_shapes()
        self._dsv4_shapes()
        if self.hybrid_pattern is None and self.mamba is not None:
            raise ValueError("mamba needs a hybrid_pattern placing its layers")
        pattern = self.moe.layer_pattern if self.moe else None
        if pattern is not None and len(pattern) != self.layers:
            raise ValueError(f"moe.layer_pattern has {len(pattern)} entries for {self.layers} layers")
        if self.moe and self.moe.dense_layers >= self.layers:
            raise ValueError(f"moe.dense_layers {self.moe.dense_layers} leaves no MoE layer "
                             f"of {self.layers}")
        return self

    def _dsv4_shapes(self) -> None:
        """Checks of DeepSeek-V4 attention, hash routing and hyper-connections."""
        att = self.attention if self.attention is not None and self.attention.kind == "dsv4" else None
        if self.hyper_connections is not None and att is None:
            raise ValueError("hyper_connections is modelled with attention kind dsv4 only")
        moe_layers = self.layers - (self.moe.dense_layers if self.moe else 0)
        if self.moe and self.moe.hash_layers and self.moe.layer_pattern is not None:
            raise ValueError("moe.hash_layers counts the MoE layers after moe.dense_layers: "
                             "not combined with moe.layer_pattern")
        if self.moe and self.moe.hash_layers > moe_layers:
            raise ValueError(f"moe.hash_layers {self.moe.hash_layers} exceeds the "
                             f"{moe_layers} MoE layers")
        if att is None:
            return
        n = len(att.compress_ratios)
        if n not in (self.layers, self.layers + self.mtp_layers):
            raise ValueError(f"attention.compress_ratios has {n} entries: give one per layer "
                             f"({self.layers}), or also one per MTP layer "
                             f"({self.layers + self.mtp_layers})")
        if self.heads % att.o_groups:
            raise ValueError(f"attention.o_groups {att.o_groups} must divide heads {self.heads}")
        if self.hybrid_pattern is not None or self.sliding_window is not None:
            raise ValueError("attention kind dsv4 has its own window: drop hybrid_pattern / "
                             "sliding_window")
        if self.moe and self.moe.layer_pattern is not None:
            raise ValueError("attention kind dsv4 is modelled with moe.dense_layers, not "
                             "moe.layer_pattern")

    def _hybrid_shapes(self) -> None:
        """Checks of a hybrid model's layer pattern and MTP pattern (workloads/mamba.py)."""
        if self.hybrid_pattern is None:
            if self.mtp_pattern is not None:
                raise ValueError("mtp_pattern describes a hybrid model's MTP module: give hybrid_pattern")
            return
        _mamba.check_pattern(self.hybrid_pattern, self.layers, self.mamba is not None,
                             self.moe is not None)
        if self.mamba is not None and _mamba.MAMBA not in self.hybrid_pattern:
            raise ValueError("a mamba block is given but hybrid_pattern has no Mamba "
                             "layers (M)")
        if self.moe and (self.moe.layer_pattern is not None or self.moe.dense_layers):
            raise ValueError("with hybrid_pattern, the MoE layers are its E layers: "
                             "drop moe.layer_pattern / moe.dense_layers")
        if self.sliding_window:
            raise ValueError("hybrid_pattern does not yet combine with sliding_window")
        if self.mtp_layers and not self.mtp_pattern:
            raise ValueError("a hybrid model's mtp_layers need the MTP module's mtp_pattern "
                             "(e.g. \"*E\": one attention and one MoE sub-layer)")
        if self.mtp_pattern:
            _mamba.check_mtp_pattern(self.mtp_pattern, self.mamba is not None,
                                     self.moe is not None)

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def uniform(self) -> bool:
        """Every layer has the same shape (a dense model with standard attention)."""
        return (self.moe is None and self.sliding_window is None and _moe.mla(self) is None
                and not self.mtp_layers and self.hybrid_pattern is None
                and (self.attention is None or self.attention.kind != "dsv4"))

    @property
    def learned_positions(self) -> bool:
        """A learned position table (GPT): neither rotary positions nor none at all."""
        return not (self.rope or self.no_positions)

    @property
    def residual_width(self) -> int:
        """Width of the residual stream between layers (and pipeline stages): hidden, or
        ``hyper_connections.copies`` x hidden (DeepSeek-V4's mHC, whose pipeline sends
        carry every copy: DeepSeek-V4 report section 3.5.2)."""
        return self.hidden * (self.hyper_connections.copies if self.hyper_connections else 1)

    @property
    def kv_heads_(self) -> int:
        return self.kv_heads or self.heads

    @property
    def ffn(self) -> int:
        return self.ffn_hidden or 4 * self.hidden

    @property
    def head_dim(self) -> int:
        return self.kv_channels or self.hidden // self.heads

    @property
    def gated(self) -> bool:
        return self.activation == "swiglu"

    @property
    def qkv_out(self) -> int:
        """Output width of the fused QKV projection (GQA shrinks K and V)."""
        return (self.heads + 2 * self.kv_heads_) * self.head_dim

    @property
    def params_per_layer(self) -> int:
        """One layer of a uniform model (see ``layer_params`` for MoE / MLA models)."""
        if not self.uniform:
            return round(sum(_moe.layer_params(self, i) for i in range(self.layers)) / self.layers)
        h = self.hidden
        b = int(self.bias)
        attn = h * self.qkv_out + self.heads * self.head_dim * h + b * (self.qkv_out + h) \
            + (2 * self.head_dim if self.qk_norm else 0)
        mlp = h * self.ffn * (3 if self.gated else 2) + b * (self.ffn * (2 if self.gated else 1) + h)
        norms = 2 * h * (2 if self.norm == "layernorm" else 1)        # scale (+ bias)
        return attn + mlp + norms

    @property
    def params(self) -> int:
        """Total parameters: layers, word and position embeddings (tied output), final norm.
        Reduces to Megatron's P = 12 l h^2 (1 + 13/(12h) + (V+s)/(12 l h)) for GPT shapes."""
        if not self.uniform:
            return _moe.total_params(self)
        h = self.hidden
        embed = self.vocab * h * (1 if self.tied_embeddings else 2) + (self.seq_len * h if self.learned_positions else 0)
        final_norm = h * (2 if self.norm == "layernorm" else 1)
        return self.layers * self.params_per_layer + embed + final_norm

    def with_seq_len(self, seq_len: int | None) -> ModelSpec:
        return self if not seq_len or seq_len == self.seq_len else self.model_copy(
            update={"seq_len": seq_len})


def megatron_params(layers: int, hidden: int, vocab: int, seq: int) -> float:
    """Narayanan et al. SC'21 section 5.1."""
    h, l_ = hidden, layers
    return 12 * l_ * h**2 * (1 + 13 / (12 * h) + (vocab + seq) / (12 * l_ * h))


def megatron_flops(batch: int, seq: int, layers: int, hidden: int, vocab: int) -> float:
    """SC'21 Eq. 3: FLOPs per iteration with full recompute (GEMMs only)."""
    s, h, l_ = seq, hidden, layers
    return 96 * batch * s * l_ * h**2 * (1 + s / (6 * h) + vocab / (16 * l_ * h))


def model_flops(m: ModelSpec, tokens: float) -> float:
    """Model FLOPs for training on ``tokens`` (forward + backward, no recompute): the
    GEMM FLOPs 6 P_matmul per token plus attention 12 l s h per token (PaLM appendix B
    convention, exact for GQA and gated MLPs; equals Korthikanti's 72 B L s h^2
    (1 + s/(6h) + V/(12hL)) for GPT shapes). MoE / MLA / MTP / windowed models count the
    active parameters per token (workloads.moe.flops_per_token)."""
    if not m.uniform:
        return tokens * _moe.flops_per_token(m)
    h = m.hidden
    matmul = m.layers * (h * m.qkv_out + m.heads * m.head_dim * h + h * m.ffn * (3 if m.gated else 2)) \
        + h * m.vocab
    attn = m.layers * 2 * m.seq_len * m.heads * m.head_dim           # QK^T and AV per token
    return 6 * tokens * (matmul + attn)


@cache
def presets() -> dict[str, ModelSpec]:
    return {k: ModelSpec(**v) for k, v in read_packaged("workloads", "data", "models.yaml").items()}


def resolve(ref: str | dict[str, Any] | ModelSpec) -> ModelSpec:
    """A model by preset name, or an inline mapping of its shape."""
    if isinstance(ref, ModelSpec):
        return ref
    if isinstance(ref, dict):
        try:
            return ModelSpec(**ref)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            raise ClusterSimError(f"inline model: {loc + ': ' if loc else ''}{msg}") from None
    table = presets()
    if ref not in table:
        raise UnknownPresetError("model", ref, list(table))
    return table[ref]
