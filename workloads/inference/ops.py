"""One serving iteration as an ExecutionGraph, and its cost, cached by batch shape.

An iteration runs the new tokens of every sequence in the batch through the model
(vLLM/Sarathi style: prefill chunks and decode tokens concatenated into one token
dimension for the GEMMs). Per layer on one TP rank, with the shapes and helpers of
``workloads.layers``:
- GEMMs over T = prefill + decode tokens; weights are read once per iteration at the
  weight precision (fp8: 1 byte), which makes small batches memory-bound;
- prefill attention: fused (flash) attention over the chunk's query-key pairs, 16-bit
  also when the GEMMs run FP8 (ATTENTION_DTYPE);
- decode attention: reads each sequence's K and V cache, memory-bound
  (FlashDecoding / PagedAttention kernels stream the KV bytes once);
- the KV write of the new tokens, norms, activation, two TP all-reduces.
Pipeline stages are Blocks on their first TP rank, joined by activation send/recv.
Pricing an iteration (and caching it by shape) is the simulator's part:
``sim/serving/iteration.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hw_models.dtypes import DTYPE_BYTES
from hw_models.errors import InfeasiblePlanError
from workloads.graph import Block, Collective, CommGroup, Compute, ExecutionGraph, SendRecv
from workloads.inference.eager import activation_kernels, kv_write_kernels, rope_kernels
from workloads.layers import LayerContext, activation_bytes, layer_gemm_shapes, mem, tp_comm
from workloads.model import ModelSpec

# Precision of the attention kernels for a serving precision. FP8 serving quantizes the
# linear layers (weights, GEMM inputs); the fused context attention stays 16-bit: in
# TensorRT-LLM v0.5 (the release of the validation table) FP8 covered the GEMMs and the
# KV cache, and FP8 context FMHA only arrived later (``use_fp8_context_fmha``,
# TensorRT-LLM 0.10+). The attention curves are FlashAttention-2 fp16 fits, so their
# efficiency is relative to the 16-bit tensor-core peak.
ATTENTION_DTYPE = {"fp16": "fp16", "bf16": "bf16", "fp8": "fp16"}


@dataclass(frozen=True)
class Shape:
    """What an iteration's cost depends on (bucketed for the cache)."""
    prefill_tokens: int = 0       # new prompt tokens (sum of chunks)
    prefill_pairs: int = 0        # causal query-key pairs of the prefill chunks
    prefill_kv: int = 0           # typical key length of a prefill chunk (efficiency curve)
    decode_seqs: int = 0          # sequences decoding one token (padding included)
    decode_kv: int = 0            # sum of their cached context lengths
    logits: int = 0               # sequences sampling a token
    prefill_seqs: int = 0         # sequences with a prefill chunk (hybrid models' state I/O)


def bucket(x: int, bits: int = 5) -> int:
    """Round up to ``bits`` significant bits (<= 1/2**bits relative error, ~3%)."""
    if x <= 1 << bits:
        return x
    step = 1 << (x.bit_length() - bits)
    return -(-x // step) * step


def bucketed(s: Shape, seqs: bool = False) -> Shape:
    """The cache key of a shape; ``seqs``: keep the prefill sequence count (only hybrid
    models' costs depend on it)."""
    return Shape(bucket(s.prefill_tokens), bucket(s.prefill_pairs), bucket(s.prefill_kv),
                 s.decode_seqs, bucket(s.decode_kv), s.logits, s.prefill_seqs if seqs else 0)


def refuse_hybrid(model: ModelSpec) -> None:
    """A hybrid Mamba model's layers are priced by workloads/inference/hybrid_ops.py
    (per-sequence Mamba state, state-update decode, chunked-scan prefill); the dense and
    MoE iteration ops do not price them."""
    if model.hybrid_pattern is not None:
        raise InfeasiblePlanError(
            "a hybrid Mamba model (hybrid_pattern) is served through the hybrid iteration "
            "model (workloads/inference/hybrid_ops.py), not this one")


def paged_decode_op(heads: int, kv_heads: int, head_dim: int, seqs: int, kv_tokens: int,
                    kv_bytes: float, act_bytes: int, dtype: str) -> Compute:
    """Decode attention of ``seqs`` sequences, one query token each, over ``kv_tokens``
    cached tokens in all: the K and V pages read once, each query read and each output
    written once (4 h d FLOPs per cached token). Priced as the paged decode kernel
    (hw_models/compute.py decode_attention) at the mean cached tokens per sequence."""
    kv_read = 2.0 * kv_heads * head_dim * kv_bytes * kv_tokens
    return Compute("decode_attention", 4.0 * heads * head_dim * kv_tokens,
                   kv_read + 2 * act_bytes * seqs * heads * head_dim, dtype,
                   (seqs * kv_heads, 1, max(1, round(kv_tokens / max(1, seqs))), head_dim),
                   name="decode_attn")


class IterationOps:
    """The operations of one serving iteration of one replica (tp x pp GPUs) for a batch
    Shape, and the replica's memory per GPU (weights, KV bytes per token)."""
    hybrid = False        # prices hybrid Mamba layers (HybridIterationOps)

    def __init__(self, model: ModelSpec, tp: int, pp: int, precision: str,
                 kv_bytes: int | None = None, kernels: str = "fused"):
        if not self.hybrid:
            refuse_hybrid(model)
        self.model, self.tp, self.pp, self.precision = model, tp, pp, precision
        self.kernels = kernels          # fused (serving engines) or eager (workloads/inference/eager.py)
        self.w_bytes = DTYPE_BYTES[precision]
        self.kv_bytes = kv_bytes or self.w_bytes
        self.group = CommGroup(tuple(range(tp)), "tp")
        # The engine's sampling kernels after the output layer, over the sampled rows' full
        # vocabulary: (kernel, op class, bytes per logit) (hw_models catalog sampler_kernels).
        self.sampler: tuple[tuple[str, str, float], ...] = ()

    def kv_bytes_per_token(self) -> float:
        """K and V of one token on one GPU: 2 x layers/pp x kv_heads/tp x head_dim x bytes."""
        m = self.model
        kvh = max(1, m.kv_heads_ // self.tp)
        return 2.0 * math.ceil(m.layers / self.pp) * kvh * m.head_dim * self.kv_bytes

    def state_bytes_per_seq(self) -> float:
        """Fixed per-sequence state on one GPU beside the KV cache (hybrid models' Mamba
        state); none for attention-only models."""
        return 0.0

    def weight_bytes_per_gpu(self) -> float:
        return self.model.params * self.w_bytes / (self.tp * self.pp)

    # ---- graph -------------------------------------------------------------------
    def _ctx(self, tokens: int) -> LayerContext:
        return LayerContext(self.model.with_seq_len(max(1, tokens)), 1, self.tp, False,
                            self.precision, self.group)

    def _gemm(self, m: int, n: int, k: int, name: str) -> Compute:
        """Y[m,n] = X[m,k] W[k,n]: 16-bit activations, weights at the serving precision."""
        nbytes = 2.0 * (m * k + m * n) + self.w_bytes * k * n
        return Compute("gemm", 2.0 * m * n * k, nbytes, self.precision, (m, n, k), name=name)

    def dense_ops(self, T: int) -> list:
        """The kernels of one layer whose cost depends only on the token count T."""
        m = self.model
        ctx = self._ctx(T)
        g, e, d = layer_gemm_shapes(ctx), ctx.act_bytes, m.head_dim
        heads, kvh = ctx.local_heads, ctx.local_kv_heads
        norm = 2 * e * T * m.hidden
        ops: list = [mem(ctx, "norm", norm, "input_norm"), self._gemm(*g["qkv"], "qkv")]
        eager = self.kernels == "eager"
        if m.rope and eager:
            ops += rope_kernels(T, heads, d, e, ctx.dtype, "rope_q") + rope_kernels(T, kvh, d, e, ctx.dtype, "rope_k")
        elif m.rope:
            ops.append(mem(ctx, "elementwise", 2 * e * T * (heads + kvh) * d, "rope"))
        ops += (kv_write_kernels(T, kvh, d, e, self.kv_bytes, ctx.dtype) if eager else
                [mem(ctx, "elementwise", 2 * T * kvh * d * (e + self.kv_bytes), "kv_write")])
        act = (activation_kernels(T, m.ffn // self.tp, e, m.gated, ctx.dtype) if eager else
               [mem(ctx, "elementwise", activation_bytes(ctx), "activation")])
        return ops + [self._gemm(*g["proj"], "attn_proj"), *tp_comm(ctx, "all_reduce", "tp_attn_out"),
                      mem(ctx, "elementwise", 3 * e * T * m.hidden, "residual_add"),
                      mem(ctx, "norm", norm, "post_attn_norm"), self._gemm(*g["mlp_up"], "mlp_up"),
                      *act, self._gemm(*g["mlp_down"], "mlp_down"), *tp_comm(ctx, "all_reduce", "tp_mlp_out"),
                      mem(ctx, "elementwise", 3 * e * T * m.hidden, "residual_add")]

    def attention_ops(self, s: Shape) -> list:
        """Prefill: fused causal attention over the chunks' query-key pairs (compute-bound).
        Decode: stream every sequence's cached K and V once (the paged decode kernel,
        memory-bound with a floor per call: ``paged_decode_op``)."""
        m, e = self.model, 2
        heads = max(1, m.heads // self.tp)
        kvh, d = max(1, m.kv_heads_ // self.tp), m.head_dim
        ops: list = []
        if s.prefill_tokens:
            flops = 4.0 * heads * d * s.prefill_pairs    # QK^T and AV over causal pairs
            ops.append(Compute("attention", flops, e * 4.0 * heads * d * s.prefill_tokens,
                               ATTENTION_DTYPE[self.precision],
                               (heads, s.prefill_tokens, max(1, s.prefill_kv), d),
                               causal=True, name="prefill_attn", flops_per_exp=4.0 * d))
        if s.decode_seqs:
            ops.append(paged_decode_op(heads, kvh, d, s.decode_seqs, s.decode_kv, self.kv_bytes,
                                       e, self.precision))
        return ops

    def layer_ops(self, s: Shape) -> list:
        """One layer on one TP rank, in kernel order."""
        dense = self.dense_ops(s.prefill_tokens + s.decode_seqs)
        cut = max(i for i, o in enumerate(dense) if o.name.startswith("kv_write")) + 1
        return dense[:cut] + self.attention_ops(s) + dense[cut:]

    def embed_op(self, T: int) -> Compute:
        return mem(self._ctx(T), "embedding", 2 * 2 * T * self.model.hidden, "embedding")

    def head_ops(self, s: Shape) -> list:
        m = self.model
        ctx = self._ctx(s.logits)
        n = max(1, s.logits)
        ops = [mem(ctx, "norm", 2 * ctx.act_bytes * n * m.hidden, "final_norm"),
               self._gemm(n, m.vocab // self.tp, m.hidden, "logits")]
        if self.tp > 1:       # gather the vocab-parallel logits of the sampled rows
            ops.append(Collective("all_gather", 4.0 * n * m.vocab, self.group, name="tp_logits"))
        # Sampling runs on every rank over the gathered (rows x vocabulary) logits.
        ops += [mem(ctx, op_class, per_logit * n * m.vocab, f"sample_{name}")
                for name, op_class, per_logit in self.sampler]
        return ops

    def build(self, s: Shape) -> ExecutionGraph:
        m, pp = self.model, self.pp
        T = s.prefill_tokens + s.decode_seqs
        per_stage = [m.layers // pp + (1 if i < m.layers % pp else 0) for i in range(pp)]
        layer = tuple(self.layer_ops(s))
        embed = self.embed_op(T)
        graph = ExecutionGraph(self.tp * pp, simulated_ranks=tuple(i * self.tp for i in range(pp)))
        prev = None
        for st, n_layers in enumerate(per_stage):
            rank = st * self.tp
            ops = layer * n_layers
            if st == 0:
                ops = (embed, *ops)
            if st == pp - 1:
                ops = (*ops, *self.head_ops(s))
            if prev is not None:
                prev = graph.add(rank, "comm", SendRecv("recv", rank - self.tp, 2.0 * T * m.hidden, st),
                                 deps=(), category="pp")
            blk = graph.add(rank, "compute", Block(ops, name=f"stage{st}"), deps=(prev,) if prev is not None else ())
            if st < pp - 1:
                prev = graph.add(rank, "comm", SendRecv("send", rank + self.tp, 2.0 * T * m.hidden, st + 1),
                                 deps=(blk,), category="pp")
        return graph
