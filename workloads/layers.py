"""Per-layer operations of a transformer on one TP rank: FLOPs and bytes per kernel.

Shapes follow Megatron-LM (Shoeybi et al. 2019; Korthikanti et al. 2023): tokens
T = b*s per microbatch; with sequence parallelism the norm/dropout regions work on T/t
tokens and the TP collectives are all-gather / reduce-scatter instead of all-reduce.
Bytes count what each kernel must read and write (activations at ``act_bytes`` each,
dropout masks at 1 byte), the same accounting as Korthikanti's activation analysis.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from hw_models.compute import gemm_bytes
from workloads.graph import Collective, CommGroup, Compute
from workloads.model import ModelSpec
from workloads.parallel import recompute_modules

if TYPE_CHECKING:
    from workloads.moe_layers import MoEContext

Op = Compute | Collective
AttentionImpl = Literal["flash", "unfused"]


@dataclass(frozen=True)
class LayerContext:
    model: ModelSpec
    micro_batch: int
    tp: int
    sp: bool
    dtype: str                      # GEMM dtype (fp8 GEMMs keep 16-bit activations)
    tp_group: CommGroup
    attention: AttentionImpl = "flash"
    act_bytes: int = 2
    moe: MoEContext | None = None   # expert-parallel groups and load (workloads/moe_layers.py)
    fused_loss: bool = True         # cross-entropy as one fused kernel (head_forward)
    # The loss is an RL framework's per-token log-probability (NeMo RL's DistributedLogprob:
    # unfused fp32 log-softmax over the TP-local vocabulary, its softmax kept for backward).
    logprob_loss: bool = False
    # The loss is PyTorch's F.cross_entropy on logits cast to fp32 (TorchTitan's Llama:
    # ``self.output(h).float()``, the loss outside the compiled blocks): _loss_bytes.
    torch_loss: bool = False
    # TP through DTensor with the sequence sharded on dim 1 (TorchTitan's SequenceParallel
    # plan, vanilla TP): each TP all-gather / reduce-scatter also moves its full tensor
    # once through a chunk-and-cat copy (tp_comm).
    tp_seq_dim_copies: bool = False
    # Bytes per element of the TP all-gathers of the linear layers' inputs and output
    # gradients (torchao's Float8 TP: 1); 0: act_bytes. The logits' gather stays 16-bit.
    tp_gather_bytes: int = 0
    grad_accum_bytes: int = 0       # per parameter and microbatch (grad_accumulation); 0: fused
    # GQA's K,V expanded to every query head before the attention kernel (``repeat_kv``
    # in TorchTitan's and Meta's reference Llama code): one copy forward, a sum backward,
    # and context parallelism exchanges the expanded K,V.
    repeat_kv: bool = False
    # FP8 dot-product attention (``workload.fp8.dot_product_attention``): cuDNN's FP8
    # backward covers every causal pair of a windowed layer (workloads/layer_attention.py).
    fp8_attention: bool = False
    # Q, K, V and the gated MLP's two up projections as separate linears on the same input
    # (TorchTitan's Llama: wq / wk / wv, w1 / w3): separate_projections.
    separate_projections: bool = False
    # RoPE as a complex multiply that torch.compile leaves to an eager kernel (TorchTitan's
    # ``apply_rotary_emb``): rope_ops.
    complex_rope: bool = False
    # The TP linears are Megatron-LM's / Transformer Engine's autograd functions (False:
    # PyTorch DTensor TP, TorchTitan): with sequence parallelism the column-parallel
    # linears save their input shard and all-gather it again in the backward, and TE's
    # quantizers gather FP8 / FP4 copies and reduce their amax over the TP group
    # (workloads/stage_ops.py ``sp_backward_gathers``, workloads/fp8.py).
    megatron_linears: bool = True
    # Those linears launch the input gradient's TP reduce-scatter (all-reduce without
    # sequence parallelism) asynchronously before the weight-gradient GEMM and wait for it
    # after (Megatron-LM since October 2022, Megatron-Core, TE): workloads/stage_ops.py
    # ``async_grad_reduce``. False: after the weight gradient (Megatron-LM before).
    async_grad_reduce: bool = True

    @property
    def tokens(self) -> int:
        return self.micro_batch * self.model.seq_len

    @property
    def norm_tokens(self) -> int:
        """Tokens in the norm / dropout regions (split across TP with sequence parallelism)."""
        return self.tokens // self.tp if self.sp else self.tokens

    @property
    def local_heads(self) -> int:
        return self.model.heads // self.tp

    @property
    def local_kv_heads(self) -> int:
        return max(1, self.model.kv_heads_ // self.tp)

    @property
    def attn_kv_heads(self) -> int:
        """K,V heads the attention kernel (and context parallelism) sees."""
        return self.local_heads if self.repeat_kv else self.local_kv_heads

    @property
    def repeats_kv(self) -> bool:
        return self.repeat_kv and self.local_kv_heads < self.local_heads


def gemm(ctx: LayerContext, m: int, n: int, k: int, name: str, count: int = 1) -> Compute:
    """Y[m,n] = X[m,k] W[k,n], ``count`` times (batched)."""
    return Compute("gemm", count * 2.0 * m * n * k,
                   count * gemm_bytes(m, n, k, ctx.act_bytes), ctx.dtype, (m, n, k), name=name)


def gemm_bwd(ctx: LayerContext, m: int, n: int, k: int, name: str, count: int = 1) -> list[Op]:
    """dX = dY W^T is (m, k, n); dW = X^T dY is (k, n, m)."""
    return [gemm(ctx, m, k, n, f"{name}_dgrad", count), gemm(ctx, k, n, m, f"{name}_wgrad", count)]


def mem(ctx: LayerContext, op_class: str, nbytes: float, name: str) -> Compute:
    return Compute(op_class, 0.0, float(nbytes), ctx.dtype, name=name)


def tp_comm(ctx: LayerContext, kind: str, name: str) -> list[Op]:
    """A TP collective of the (tokens, hidden) activation. With ``tp_seq_dim_copies``
    (PyTorch's functional collectives on a dim-1 shard, torch/distributed/
    _functional_collectives.py: ``all_gather_tensor`` with gather_dim != 0 returns
    ``torch.cat(torch.chunk(res, group_size, dim=0), dim=gather_dim)``, and
    ``reduce_scatter_tensor`` with scatter_dim != 0 first packs its input by
    ``torch.cat(torch.chunk(input, group_size, dim=scatter_dim))``) the all-gather is
    followed, the reduce-scatter preceded, by a copy of the whole tensor (read and write).
    ``tp_gather_bytes``: torchao's Float8 TP casts the linear layers' inputs (forward) and
    output gradients (backward, ``NoopFwToFloat8BwDynamic``) to FP8 on the shard before
    the all-gather (torchao/float8/float8_tensor_parallel.py), so those gathers and their
    copies move 1 byte an element; the reduce-scatters of the 16-bit outputs do not."""
    if ctx.tp == 1:
        return []
    e = ctx.act_bytes
    if kind == "all_gather" and ctx.tp_gather_bytes and not name.startswith("tp_ag_logits"):
        e = ctx.tp_gather_bytes
    nbytes = float(e * ctx.tokens * ctx.model.hidden)
    op = Collective(kind, nbytes, ctx.tp_group, name=name)
    if not ctx.tp_seq_dim_copies or kind not in ("all_gather", "reduce_scatter"):
        return [op]
    cat = mem(ctx, "elementwise", 2 * nbytes, f"{name}_seq_cat")
    return [op, cat] if kind == "all_gather" else [cat, op]


def enter_tp(ctx: LayerContext, name: str) -> list[Op]:
    """Conjugate f (Megatron): identity / all-gather forward."""
    return tp_comm(ctx, "all_gather", name) if ctx.sp else []


def exit_tp(ctx: LayerContext, name: str) -> list[Op]:
    """Conjugate g: all-reduce / reduce-scatter forward."""
    return tp_comm(ctx, "reduce_scatter" if ctx.sp else "all_reduce", name)


def enter_tp_bwd(ctx: LayerContext, name: str) -> list[Op]:
    """f's backward is g."""
    return exit_tp(ctx, name)


def exit_tp_bwd(ctx: LayerContext, name: str) -> list[Op]:
    """g's backward is f."""
    return enter_tp(ctx, name)


def attention_core(ctx: LayerContext) -> list[Op]:
    m, b, s, e = ctx.model, ctx.micro_batch, ctx.model.seq_len, ctx.act_bytes
    bh, d = b * ctx.local_heads, m.head_dim
    if ctx.attention == "flash":
        flops = 4.0 * bh * s * s * d / 2          # causal: half the score matrix is computed
        return [*repeat_kv_copy(ctx, "repeat_kv"),
                Compute("attention", flops, e * bh * s * d * 4.0, ctx.dtype, (bh, s, s, d),
                        causal=True, name="flash_attn_fwd", flops_per_exp=4.0 * d)]
    probs = bh * s * s
    return [gemm(ctx, s, s, d, "attn_scores", bh),
            mem(ctx, "softmax", 2 * e * probs, "scale_mask_softmax"),
            mem(ctx, "elementwise", (2 * e + 1) * probs, "attn_dropout"),
            gemm(ctx, s, d, s, "attn_context", bh)]


def repeat_kv_copy(ctx: LayerContext, name: str) -> list[Op]:
    """K,V of the local KV heads copied to every query head (forward), or the expanded
    gradients summed back (backward): reads one side, writes the other."""
    if not ctx.repeats_kv:
        return []
    per_head = 2.0 * ctx.act_bytes * ctx.tokens * ctx.model.head_dim      # K and V
    return [mem(ctx, "elementwise", per_head * (ctx.local_heads + ctx.local_kv_heads), name)]


def attention_core_bwd(ctx: LayerContext) -> list[Op]:
    m, b, s, e = ctx.model, ctx.micro_batch, ctx.model.seq_len, ctx.act_bytes
    bh, d = b * ctx.local_heads, m.head_dim
    if ctx.attention == "flash":
        flops = 2.5 * 4.0 * bh * s * s * d / 2    # FA2 convention: bwd = 2.5 x fwd FLOPs
        return [Compute("attention", flops, e * bh * s * d * 8.0, ctx.dtype, (bh, s, s, d),
                        causal=True, name="flash_attn_bwd", flops_per_exp=2.5 * 4.0 * d),
                *repeat_kv_copy(ctx, "repeat_kv_bwd")]
    probs = bh * s * s
    return [*gemm_bwd(ctx, s, d, s, "attn_context", bh),
            mem(ctx, "elementwise", (2 * e + 1) * probs, "attn_dropout_bwd"),
            mem(ctx, "softmax", 3 * e * probs, "softmax_bwd"),
            *gemm_bwd(ctx, s, s, d, "attn_scores", bh)]


def layer_gemm_shapes(ctx: LayerContext) -> dict[str, tuple[int, int, int]]:
    m, t, T = ctx.model, ctx.tp, ctx.tokens
    up = m.ffn * (2 if m.gated else 1) // t
    return {"qkv": (T, m.qkv_out // t, m.hidden), "proj": (T, m.hidden, m.heads * m.head_dim // t),
            "mlp_up": (T, up, m.hidden), "mlp_down": (T, m.hidden, m.ffn // t)}


def _projection_parts(ctx: LayerContext) -> dict[str, tuple[tuple[str, int], ...]]:
    """The separate linears of each fused GEMM and their output widths on the TP rank."""
    m, t = ctx.model, ctx.tp
    kv = ctx.local_kv_heads * m.head_dim
    parts = {"qkv": (("wq", m.heads * m.head_dim // t), ("wk", kv), ("wv", kv))}
    if m.gated:
        parts["mlp_up"] = (("w1", m.ffn // t), ("w3", m.ffn // t))
    return parts


def _split_gemm(op: Compute, widths: tuple[tuple[str, int], ...], base: str, dim: int) -> list[Compute]:
    """``op`` as one GEMM per part, each on its share of dimension ``dim`` of the shape;
    FLOPs and bytes per element (16-bit or FP8 operands) as the fused GEMM's."""
    m, n, k = op.shape
    per_elem = op.bytes / (m * k + k * n + m * n)
    out = []
    for part, w in widths:
        shape = [m, n, k]
        shape[dim] = w
        a, b, c = shape
        out.append(replace(op, flops=2.0 * a * b * c * (op.flops / (2.0 * m * n * k)),
                           bytes=per_elem * (a * c + c * b + a * b), shape=(a, b, c),
                           name=op.name.replace(base, f"{base}_{part}", 1)))
    return out


def separate_projections(ctx: LayerContext, ops: list) -> list:
    """TorchTitan's Llama (torchtitan/models/llama/model.py at 9dec370, e7c0cae, 820504e:
    ``Attention.wq / wk / wv``, ``FeedForward.w1 / w3``, each an ``nn.Linear``) computes
    Q, K, V and the two halves of the gated MLP's up projection as separate GEMMs on the
    same input: three (two) smaller GEMMs where Megatron runs one fused QKV (fc1), each
    reading the input again, with their input gradients and weight gradients split the
    same way. Autograd sums the separate input gradients into the input's gradient
    (``_dgrad_sum`` after the last dgrad). Inductor fuses that pointwise sum into the
    kernel that next reads the gradient where there is one: without TP the norm's
    backward (a reduction whose pointwise inputs are fused into it), with DTensor's
    sequence-dim reduce-scatter its chunk-and-cat copy (a pointwise cat, up to
    ``max_pointwise_cat_inputs`` = 8 inputs), so the sum only reads the n - 1 further
    partial gradients; before a reduce-scatter that takes the tensor itself it is a pass
    of its own (read n, write 1). GEMMs whose width is not the fused one (the selective
    recompute's K projection and w3) are left as they are."""
    if not ctx.separate_projections:
        return ops
    parts = _projection_parts(ctx)
    out: list = []
    for op in ops:
        base = next((b for b in parts if isinstance(op, Compute) and op.op_class == "gemm" and op.shape
                     and op.name in (b, f"{b}_dgrad", f"{b}_wgrad")), None)
        if base is None:
            out.append(op)
            continue
        widths = parts[base]
        dim = 2 if op.name.endswith("_dgrad") else 1
        if op.shape[dim] != sum(w for _, w in widths):
            out.append(op)
            continue
        out += _split_gemm(op, widths, base, dim)
        if dim == 2:
            fused = ctx.tp == 1 or (ctx.tp_seq_dim_copies and ctx.tp <= 8)
            passes = len(widths) - 1 if fused else len(widths) + 1
            out.append(mem(ctx, "elementwise", passes * ctx.act_bytes * op.shape[0] * op.shape[1],
                           f"{base}_dgrad_sum"))
    return out


def activation_bytes(ctx: LayerContext) -> float:
    """Bias-GELU reads and writes the (T, ffn/t) activation; SwiGLU reads two, writes one."""
    m = ctx.model
    return (3 if m.gated else 2) * ctx.act_bytes * ctx.tokens * m.ffn / ctx.tp


def rope_ops(ctx: LayerContext, elements: float, backward: bool = False) -> list[Op]:
    """Rotary embedding of ``elements`` query and key elements. Fused (one compiled or
    fused kernel, read and write 16-bit; its backward left unpriced). ``complex_rope``:
    TorchTitan's ``apply_rotary_emb`` (torchtitan/models/llama/model.py at 9dec370,
    e7c0cae, 820504e) multiplies ``view_as_complex(x.float())`` by the complex frequencies
    and casts ``view_as_real`` of the product back (``type_as``). The block is compiled
    (``apply_compile``, fullgraph), but Inductor does not generate code for complex
    operators and falls back to the eager kernel ("Torchinductor does not support code
    generation for complex operators", torch/_inductor/lowering.py; TorchTitan issue
    #15), so the product runs alone between two compiled casts: the cast to fp32 (read
    ``act_bytes``, write 4), the complex multiply (read 4, write 4 per real element; the
    frequencies are one row per position) and the cast back (read 4, write ``act_bytes``).
    The backward runs the same three passes on the gradient (``grad * conj(freqs)``)."""
    e = ctx.act_bytes
    if not ctx.complex_rope:
        return [] if backward else [mem(ctx, "elementwise", 2 * e * elements, "rope")]
    return [mem(ctx, "elementwise", (2 * e + 16) * elements, "rope_bwd" if backward else "rope")]


def layer_forward(ctx: LayerContext) -> list[Op]:
    m, e, Tn = ctx.model, ctx.act_bytes, ctx.norm_tokens
    g = layer_gemm_shapes(ctx)
    norm = 2 * e * Tn * m.hidden
    dropout_add = (3 * e + 1) * Tn * m.hidden
    ops: list[Op] = [mem(ctx, "norm", norm, "input_norm"), *enter_tp(ctx, "tp_ag_attn"),
                     gemm(ctx, *g["qkv"], "qkv")]
    if m.rope:
        ops += rope_ops(ctx, ctx.tokens * (ctx.local_heads + ctx.local_kv_heads) * m.head_dim)
    ops += [*attention_core(ctx), gemm(ctx, *g["proj"], "attn_proj"), *exit_tp(ctx, "tp_attn_out"),
            mem(ctx, "elementwise", dropout_add, "bias_dropout_add"),
            mem(ctx, "norm", norm, "post_attn_norm"), *enter_tp(ctx, "tp_ag_mlp"),
            gemm(ctx, *g["mlp_up"], "mlp_up"), mem(ctx, "elementwise", activation_bytes(ctx), "activation"),
            gemm(ctx, *g["mlp_down"], "mlp_down"), *exit_tp(ctx, "tp_mlp_out"),
            mem(ctx, "elementwise", dropout_add, "bias_dropout_add")]
    return ops


def layer_backward(ctx: LayerContext) -> list[Op]:
    m, e, Tn = ctx.model, ctx.act_bytes, ctx.norm_tokens
    g = layer_gemm_shapes(ctx)
    norm_bwd = 3 * e * Tn * m.hidden
    dropout_bwd = (2 * e + 1) * Tn * m.hidden
    return [mem(ctx, "elementwise", dropout_bwd, "dropout_add_bwd"), *exit_tp_bwd(ctx, "tp_mlp_out_bwd"),
            *gemm_bwd(ctx, *g["mlp_down"], "mlp_down"),
            mem(ctx, "elementwise", 1.5 * activation_bytes(ctx), "activation_bwd"),
            *gemm_bwd(ctx, *g["mlp_up"], "mlp_up"), *enter_tp_bwd(ctx, "tp_mlp_in_bwd"),
            mem(ctx, "norm", norm_bwd, "post_attn_norm_bwd"),
            mem(ctx, "elementwise", dropout_bwd, "dropout_add_bwd"), *exit_tp_bwd(ctx, "tp_attn_out_bwd"),
            *gemm_bwd(ctx, *g["proj"], "attn_proj"), *attention_core_bwd(ctx),
            *rope_ops(ctx, ctx.tokens * (ctx.local_heads + ctx.local_kv_heads) * m.head_dim, True),
            *gemm_bwd(ctx, *g["qkv"], "qkv"), *enter_tp_bwd(ctx, "tp_attn_in_bwd"),
            mem(ctx, "norm", norm_bwd, "input_norm_bwd")]


def layer_recompute(ctx: LayerContext, mode) -> list[Op]:
    """Full recompute re-runs the layer's forward; selective only the attention core
    (Korthikanti et al.). FlashAttention already recomputes its scores in its backward,
    so selective recompute costs nothing extra with it. ``selective_op``: TorchTitan's
    per-op policy (``_apply_ac_to_transformer_block``, selective_ac_option "op").
    Megatron-Core's recompute_modules (a module-set mode or the list itself,
    workloads/parallel.recompute_modules): ``layernorm`` re-runs the input and pre-MLP
    norms, ``core_attn`` the attention kernel (tensor_parallel.checkpoint re-runs it,
    fused or not, before its backward), ``mlp`` the MLP; a dense layer has no expert
    activation or MoE block (``mla_up_proj`` needs MLA, which runs layer by layer:
    moe_layers.py)."""
    if mode == "full":
        return layer_forward(ctx)
    if mode == "selective_op":
        return selective_op_recompute(ctx)
    if mode == "selective" and ctx.attention == "unfused":
        return attention_core(ctx)
    modules = recompute_modules(mode)
    ops: list[Op] = []
    if "layernorm" in modules:
        norm = 2 * ctx.act_bytes * ctx.norm_tokens * ctx.model.hidden
        ops += [mem(ctx, "norm", norm, "input_norm"), mem(ctx, "norm", norm, "post_attn_norm")]
    if "core_attn" in modules:
        ops += attention_core(ctx)
    if "mlp" in modules:                     # Megatron-Core [mlp]: the MLP re-runs (no MLA here)
        g = layer_gemm_shapes(ctx)
        ops += [*enter_tp(ctx, "tp_ag_mlp"), gemm(ctx, *g["mlp_up"], "mlp_up"),
                mem(ctx, "elementwise", activation_bytes(ctx), "activation"),
                gemm(ctx, *g["mlp_down"], "mlp_down"), *exit_tp(ctx, "tp_mlp_out")]
    return ops


def selective_op_recompute(ctx: LayerContext) -> list[Op]:
    """TorchTitan's per-op selective checkpointing: the outputs of attention, of the TP
    reduce-scatters and of every other matmul of the block (wq, wv, w1, w2 in call order
    wq, wk, wv, wo, w1, w3, w2) are saved; all else is recomputed where the backward needs
    it (torch.compile's partitioner drops the rest): the norms and the sequence-parallel
    all-gathers (the weight gradients' inputs), the K projection and RoPE (attention's
    backward needs K), the residual add, the w3 half of the gated MLP's up projection
    and the activation (w2's input).

    The residual sum h = x + wo(attention) is the MLP norm's input (its backward and the
    MLP's weight gradients need it). With TP it is rebuilt from the saved reduce-scatter
    output; without TP it needs wo's output, which the policy does not save
    (PREFER_RECOMPUTE: the AOT partitioner's ``must_recompute`` treats it as
    MUST_RECOMPUTE, so it cannot be stored either), so wo is recomputed as well."""
    m, e, Tn, T = ctx.model, ctx.act_bytes, ctx.norm_tokens, ctx.tokens
    norm = 2 * e * Tn * m.hidden
    ops: list[Op] = [mem(ctx, "norm", norm, "input_norm"), *enter_tp(ctx, "tp_ag_attn"),
                     gemm(ctx, T, ctx.local_kv_heads * m.head_dim, m.hidden, "qkv")]
    if m.rope:
        ops += rope_ops(ctx, T * ctx.local_kv_heads * m.head_dim)
    if ctx.tp == 1:
        ops.append(gemm(ctx, *layer_gemm_shapes(ctx)["proj"], "attn_proj"))
    ops += [mem(ctx, "elementwise", 3 * e * Tn * m.hidden, "residual_add"),
            mem(ctx, "norm", norm, "post_attn_norm"), *enter_tp(ctx, "tp_ag_mlp")]
    if m.gated:
        ops.append(gemm(ctx, T, m.ffn // ctx.tp, m.hidden, "mlp_up"))
    return ops + [mem(ctx, "elementwise", activation_bytes(ctx), "activation")]


def embedding_forward(ctx: LayerContext) -> list[Op]:
    m, e = ctx.model, ctx.act_bytes
    n = ctx.norm_tokens * m.hidden
    ops = [mem(ctx, "embedding", 2 * e * ctx.tokens * m.hidden, "embedding")]
    if ctx.tp > 1:   # vocab-parallel lookup is summed across TP ranks
        ops += exit_tp(ctx, "tp_embedding")
    return ops + [mem(ctx, "elementwise", (2 * e + 1) * n, "embedding_dropout")]


def grad_accumulation(ctx: LayerContext, params: float) -> list[Op]:
    """Without gradient-accumulation fusion (the weight-gradient GEMM adding into the main
    gradient itself: Megatron's --gradient-accumulation-fusion, which Megatron-LM of 2021
    did not have) every microbatch's weight gradients are added to the accumulated ones in
    a separate pass: Megatron's DDP hook ``param.main_grad.add_(param.grad.data)``
    (megatron/model/distributed.py), or PyTorch's AccumulateGrad ``grad += new`` without
    it. Read both, write the sum: ``grad_accum_bytes`` per parameter (2 x main-gradient
    bytes + the 16-bit new gradient)."""
    if not ctx.grad_accum_bytes:
        return []
    return [mem(ctx, "elementwise", ctx.grad_accum_bytes * params, "accumulate_wgrad")]


def embedding_backward(ctx: LayerContext) -> list[Op]:
    m, e = ctx.model, ctx.act_bytes
    return [*exit_tp_bwd(ctx, "tp_embedding_bwd"),
            mem(ctx, "embedding", 3 * e * ctx.tokens * m.hidden, "embedding_bwd")]


# Bytes per logit element of the vocab-parallel cross-entropy, forward and backward, beyond
# the 16-bit logits the GEMM writes (e: their size). Fused: read the logits, three fp32
# passes. Megatron's unfused form (megatron/core/tensor_parallel/cross_entropy.py, the
# default without --cross-entropy-loss-fusion, and Megatron-LM's only form in 2021): the
# forward casts to fp32 (read e, write 4), takes the max (read 4), subtracts it in place
# (read 4, write 4), exponentiates in place (read 4, write 4), sums (read 4) and divides in
# place (read 4, write 4): e + 36; the backward multiplies the saved softmax by the loss
# gradient in place (read 4, write 4) and casts the result back (read 4, write e): 12 + e.
# NeMo RL's log-probability (nemo_rl/distributed/model_utils.py, DistributedLogprob and
# _compute_distributed_log_softmax): cast to fp32 (read e, write 4), max (read 4), subtract
# into a new tensor (read 4, write 4), exponentiate into a new tensor (read 4, write 4), sum
# (read 4), subtract the log-sum (read 4, write 4), exponentiate for the saved softmax (read
# 4, write 4): e + 44; backward: negate the softmax (read 4, write 4), scale it in place
# (read 4, write 4), cast the gradient back (read 4, write e): 20 + e.
# PyTorch's F.cross_entropy on fp32 logits (TorchTitan: ``output(h).float()``, eager
# log_softmax + nll_loss): the cast (read e, write 4), the log-softmax kernel over a row
# too long for shared memory (cunn_SoftMaxForward: read for the max, read for the sum of
# exponentials, read and write the result: 16): e + 20; backward: nll_loss_backward's
# zero-filled gradient (write 4), the log-softmax backward (read the gradient for its
# sum, read it and the saved output, write: 16), the cast back (read 4, write e): 24 + e.
def _loss_bytes(ctx: LayerContext) -> tuple[int, int]:
    e = ctx.act_bytes
    if ctx.logprob_loss:
        return e + 44, 20 + e
    if ctx.torch_loss:
        return e + 20, 24 + e
    return (e + 3 * 4, 4 + e) if ctx.fused_loss else (e + 36, 12 + e)


def head_forward(ctx: LayerContext) -> list[Op]:
    """Final norm, logits GEMM over the TP-local vocabulary, vocab-parallel cross-entropy
    (fp32 logits: read/write passes of 4 bytes, ``_loss_bytes``; three small all-reduces
    over TP)."""
    m, e, T = ctx.model, ctx.act_bytes, ctx.tokens
    v_local = m.vocab // ctx.tp
    ops: list[Op] = [mem(ctx, "norm", 2 * e * ctx.norm_tokens * m.hidden, "final_norm"),
                     *enter_tp(ctx, "tp_ag_logits"), gemm(ctx, T, v_local, m.hidden, "logits"),
                     mem(ctx, "loss", _loss_bytes(ctx)[0] * T * v_local, "cross_entropy")]
    if ctx.tp > 1:
        ops += [Collective("all_reduce", 4.0 * T, ctx.tp_group, name="tp_loss")] * 3
    return ops


def head_backward(ctx: LayerContext) -> list[Op]:
    m, e, T = ctx.model, ctx.act_bytes, ctx.tokens
    v_local = m.vocab // ctx.tp
    return [mem(ctx, "loss", _loss_bytes(ctx)[1] * T * v_local, "cross_entropy_bwd"),
            *gemm_bwd(ctx, T, v_local, m.hidden, "logits"), *enter_tp_bwd(ctx, "tp_logits_bwd"),
            mem(ctx, "norm", 3 * e * ctx.norm_tokens * m.hidden, "final_norm_bwd")]
