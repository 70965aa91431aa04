"""The operations of a serving iteration of MoE, MLA and windowed-attention models.

Same structure as workloads.inference.ops.IterationOps (whose docstring describes the
iteration; sim/serving/moe_iteration.py prices it), with the layer kinds of workloads/moe.py:

- MoE layers: router GEMM (T, E, h); the routed experts are split over TP (every TP
  rank holds 1/tp of each expert, vLLM's default without expert parallelism); a batch
  of T tokens with top-k routing touches E (1 - (1 - k/E)^T) experts on average
  (uniform routing), whose weights are read once per iteration: at decode the expert
  GEMMs are weight-read bound, at prefill compute bound. Shared experts are dense GEMMs.
- MLA layers cache the compressed latent (kv_lora_rank + qk_rope_head_dim per token and
  layer, replicated over TP), not per-head K and V; decode attention reads it once
  (DeepSeek-V2 section 2.1, weight absorption) and computes over d = kv_lora + rope for
  the scores and kv_lora for the context; prefill runs fused attention over d_qk / d_v.
- Windowed layers attend at most ``window`` keys: prefill query-key pairs are capped at
  tokens x window, decode reads at most window cached tokens per sequence.

Expert parallelism with attention data parallelism (``ep`` > 1, as SGLang and DeepSeek
deploy DeepSeek-V3): a replica spans ep GPUs (x tp x pp); the iteration's batch is shared
evenly by them for attention and dense layers (each GPU holds all non-expert weights and
its own sequences' KV cache), while each holds E/ep experts and receives 1/ep of the routed
tokens through an all-to-all dispatch and combine per MoE layer (e T_gpu k h bytes each;
with ``deepep``, DeepEP's normal kernels, or its low-latency ones in iterations that only
decode: workloads/moe_layers.py). Two-batch overlap runs the batch as two halves
(``micro_batches``). A replica's KV capacity is ep GPUs' worth.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

from workloads.graph import Block, Compute, ExecutionGraph, SendRecv
from workloads.inference.ops import ATTENTION_DTYPE, IterationOps, Shape
from workloads.layers import LayerContext, mem, tp_comm
from workloads.moe import expert_params, is_moe_layer, is_window_layer, mla
from workloads.moe_layers import make_context, route


def _share(x: int, ep: int) -> int:
    return -(-x // ep)


def micro_batch(s: Shape, parts: int) -> Shape:
    """One of ``parts`` equal micro-batches of an iteration (two-batch overlap splits the
    batch in two and runs every kernel once per half)."""
    if parts == 1:
        return s
    return Shape(_share(s.prefill_tokens, parts), _share(s.prefill_pairs, parts), s.prefill_kv,
                 _share(s.decode_seqs, parts), _share(s.decode_kv, parts), _share(s.logits, parts))


def per_gpu(s: Shape, ep: int) -> Shape:
    """One GPU's share of a replica's batch under attention data parallelism."""
    if ep == 1:
        return s
    return Shape(_share(s.prefill_tokens, ep), _share(s.prefill_pairs, ep), s.prefill_kv,
                 _share(s.decode_seqs, ep), _share(s.decode_kv, ep), _share(s.logits, ep))


class MoEIterationOps(IterationOps):

    def __init__(self, model, tp: int, pp: int, precision: str, kv_bytes: int | None = None,
                 **moe):
        super().__init__(model, tp, pp, precision, kv_bytes)
        self.configure(**moe)

    def configure(self, ep: int = 1, dispatcher: str = "alltoall", overlap: bool = False,
                  domain_gpus: int = 8, dispatch_dtype: str = "bf16",
                  deepep_mode: str = "auto") -> None:
        """Expert parallelism of the replica: ep GPUs, the dispatcher, two-batch overlap;
        ``domain_gpus`` consecutive GPUs share NVLink; the dispatch payload; DeepEP's
        kernels (``auto``: low-latency for iterations that only decode)."""
        self.ep, self.overlap, self.deepep_mode = ep, overlap, deepep_mode
        span = self.tp * self.pp
        ranks = tuple(range(0, ep * span, span))
        self.moe_ctx = make_context(ranks, (0,), dispatcher, 1.0, domain_gpus, dispatch_dtype)

    @property
    def micro_batches(self) -> int:
        """Two-batch overlap (``overlap`` with ep > 1 and no pipeline): two half batches."""
        return 2 if self.overlap and self.ep > 1 and self.pp == 1 else 1

    def low_latency(self, decode_only: bool) -> bool:
        """Whether an iteration's dispatches run DeepEP's low-latency kernels."""
        mode = self.deepep_mode
        return self.moe_ctx.dispatcher == "deepep" and (
            mode == "low_latency" or (mode == "auto" and decode_only))

    def kv_bytes_per_token(self) -> float:
        """Per GPU, averaged over the replica's ep GPUs (each holds its own sequences)."""
        att = mla(self.model)
        if att is None:
            return super().kv_bytes_per_token() / self.ep
        layers = math.ceil(self.model.layers / self.pp)
        return layers * (att.kv_lora_rank + att.qk_rope_head_dim) * self.kv_bytes / self.ep

    def weight_bytes_per_gpu(self) -> float:
        m = self.model
        experts = sum(expert_params(m, i) for i in range(m.layers))
        return (m.params - experts + experts / self.ep) * self.w_bytes / (self.tp * self.pp)

    def kinds(self) -> Counter:
        m = self.model
        return Counter((is_moe_layer(m, i), is_window_layer(m, i)) for i in range(m.layers))

    # ---- kernels that depend on the token count only ------------------------------
    def _attn_projections(self, T: int) -> list:
        m = self.model
        ctx = self._ctx(T)
        e, lh = ctx.act_bytes, ctx.local_heads
        att = mla(m)
        if att is None:
            kvh, d = ctx.local_kv_heads, m.head_dim
            return [self._gemm(T, (lh + 2 * kvh) * d, m.hidden, "qkv"),
                    mem(ctx, "elementwise", 2 * e * T * (lh + kvh) * d, "rope"),
                    mem(ctx, "elementwise", 2 * T * kvh * d * (e + self.kv_bytes), "kv_write")], \
                [self._gemm(T, m.hidden, lh * d, "attn_proj")]
        latent = att.kv_lora_rank + att.qk_rope_head_dim
        q = ([self._gemm(T, att.q_lora_rank, m.hidden, "mla_q_down"),
              self._gemm(T, lh * att.qk_head_dim, att.q_lora_rank, "mla_q_up")]
             if att.q_lora_rank else [self._gemm(T, lh * att.qk_head_dim, m.hidden, "mla_q")])
        return [*q, self._gemm(T, latent, m.hidden, "mla_kv_down"),
                self._gemm(T, lh * (att.qk_nope_head_dim + att.v_head_dim), att.kv_lora_rank, "mla_kv_up"),
                mem(ctx, "elementwise", T * latent * (e + self.kv_bytes), "latent_write")], \
            [self._gemm(T, m.hidden, lh * att.v_head_dim, "attn_proj")]

    def _experts(self, T: int, T_all: int | None = None, decode_only: bool = False) -> list:
        """This GPU's T tokens' routing, and its E/ep experts' GEMMs over the routed tokens
        of all T_all tokens of the replica that land on them (T k on average)."""
        m, ctx = self.model, self._ctx(T)
        E, k, h = m.moe.experts, m.moe.top_k, m.hidden
        f = m.moe.expert_ffn_hidden // self.tp
        up = f * (2 if m.gated else 1)
        T_all = T_all or T
        active = E / self.ep * (1 - (1 - k / E) ** T_all)
        per = max(1, round(T * k / active))
        ops = [self._gemm(T, E, h, "router"), mem(ctx, "softmax", 3 * 4 * T * E, "router_topk")]
        for n_out, n_in, name in ((up, h, "expert_up"), (h, f, "expert_down")):
            nbytes = 2.0 * T * k * (n_in + n_out) + self.w_bytes * active * n_in * n_out
            ops.append(Compute("gemm", 2.0 * T * k * n_in * n_out, nbytes, self.precision,
                               (per, n_out, n_in), name=name))
        ops.insert(3, mem(ctx, "elementwise", (3 if m.gated else 2) * ctx.act_bytes * T * k * f,
                          "expert_activation"))
        if self.ep > 1:          # dispatch before the experts, combine after them
            mctx = replace(self.moe_ctx, low_latency=self.low_latency(decode_only))
            rctx = LayerContext(m.with_seq_len(max(1, T)), 1, 1, False, self.precision,
                                self.group, moe=mctx)
            ops[2:2] = route(rctx, "dispatch", out=False)
            ops += route(rctx, "combine", out=True)
        if m.moe.shared_experts:
            fs = m.moe.shared_experts * m.moe.shared_ffn // self.tp
            ops += [self._gemm(T, fs * (2 if m.gated else 1), h, "shared_up"),
                    mem(ctx, "elementwise", (3 if m.gated else 2) * ctx.act_bytes * T * fs, "shared_act"),
                    self._gemm(T, h, fs, "shared_down")]
        return ops

    def _dense_mlp(self, T: int) -> list:
        m, ctx = self.model, self._ctx(T)
        f = m.ffn // self.tp
        return [self._gemm(T, f * (2 if m.gated else 1), m.hidden, "mlp_up"),
                mem(ctx, "elementwise", (3 if m.gated else 2) * ctx.act_bytes * T * f, "activation"),
                self._gemm(T, m.hidden, f, "mlp_down")]

    def token_ops(self, T: int, moe: bool, T_all: int | None = None,
                  compute: bool | None = None, decode_only: bool = False) -> list:
        """One layer's kernels (attention core excluded) for T tokens on this GPU (T_all in
        the replica under attention data parallelism); ``compute`` True / False keeps only
        the kernels / only the EP communication; ``decode_only``: an iteration without
        prefill tokens (DeepEP's low-latency kernels under ``deepep_mode: auto``)."""
        ops = self._token_ops(T, moe, T_all, decode_only)
        if compute is None:
            return ops
        return [o for o in ops if (getattr(getattr(o, "group", None), "dim", None) == "ep") != compute]

    def _token_ops(self, T: int, moe: bool, T_all: int | None, decode_only: bool = False) -> list:
        ctx, h = self._ctx(T), self.model.hidden
        e = ctx.act_bytes
        norm = 2 * e * T * h
        pre, post = self._attn_projections(T)
        return [mem(ctx, "norm", norm, "input_norm"), *pre, *post,
                *tp_comm(ctx, "all_reduce", "tp_attn_out"),
                mem(ctx, "elementwise", 3 * e * T * h, "residual_add"),
                mem(ctx, "norm", norm, "post_attn_norm"),
                *(self._experts(T, T_all, decode_only) if moe else self._dense_mlp(T)),
                *tp_comm(ctx, "all_reduce", "tp_mlp_out"),
                mem(ctx, "elementwise", 3 * e * T * h, "residual_add")]

    # ---- attention core -----------------------------------------------------------
    def attention_ops_of(self, s: Shape, window: bool) -> list:
        m, e = self.model, 2
        heads = max(1, m.heads // self.tp)
        att = mla(m)
        w = m.sliding_window.size if window else None
        pairs = min(s.prefill_pairs, s.prefill_tokens * w) if w else s.prefill_pairs
        kv = min(s.decode_kv, s.decode_seqs * w) if w else s.decode_kv
        d_qk, d_v = (att.qk_head_dim, att.v_head_dim) if att else (m.head_dim, m.head_dim)
        ops: list = []
        if s.prefill_tokens:
            ops.append(Compute("attention", 2.0 * heads * (d_qk + d_v) * pairs,
                               e * 2.0 * heads * (d_qk + d_v) * s.prefill_tokens,
                               ATTENTION_DTYPE[self.precision],
                               (heads, s.prefill_tokens, max(1, min(s.prefill_kv, w or s.prefill_kv)), d_qk),
                               causal=True, name="prefill_attn"))
        if s.decode_seqs:
            if att is None:
                kvh = max(1, m.kv_heads_ // self.tp)
                read, flops = 2.0 * kvh * m.head_dim * self.kv_bytes * kv, 4.0 * heads * m.head_dim * kv
            else:
                latent = att.kv_lora_rank + att.qk_rope_head_dim
                read = latent * self.kv_bytes * kv
                flops = 2.0 * heads * (latent + att.kv_lora_rank) * kv
            ops.append(Compute("other", flops, read + 2 * e * s.decode_seqs * heads * d_v,
                               self.precision, name="decode_attn"))
        return ops

    # ---- graph (the reference the cached ``time`` agrees with) --------------------
    def layer_ops_at(self, s: Shape, i: int, T_all: int | None = None) -> list:
        T = s.prefill_tokens + s.decode_seqs
        ops = self.token_ops(T, is_moe_layer(self.model, i), T_all,
                             decode_only=s.prefill_tokens == 0)
        cut = next(j for j, o in enumerate(ops) if o.name == "attn_proj")
        return ops[:cut] + self.attention_ops_of(s, is_window_layer(self.model, i)) + ops[cut:]

    def build(self, s: Shape) -> ExecutionGraph:
        m, pp, mbs = self.model, self.pp, self.micro_batches
        s = micro_batch(s, mbs)
        T_all = s.prefill_tokens + s.decode_seqs
        s = per_gpu(s, self.ep)
        T = s.prefill_tokens + s.decode_seqs
        per_stage = [m.layers // pp + (1 if i < m.layers % pp else 0) for i in range(pp)]
        graph = ExecutionGraph(self.tp * pp * self.ep,
                               simulated_ranks=tuple(i * self.tp for i in range(pp)))
        prev, first = None, 0
        for st, n_layers in enumerate(per_stage):
            rank = st * self.tp
            ops = tuple(o for i in range(first, first + n_layers) for o in self.layer_ops_at(s, i, T_all))
            first += n_layers
            if st == 0:
                ops = (self.embed_op(T), *ops)
            if st == pp - 1:
                ops = (*ops, *self.head_ops(s))
            ops = ops * mbs                 # each micro-batch runs every kernel
            if prev is not None:
                prev = graph.add(rank, "comm", SendRecv("recv", rank - self.tp, 2.0 * T * m.hidden, st),
                                 deps=(), category="pp")
            overlap = ("ep",) if self.overlap and pp == 1 else ()
            blk = graph.add(rank, "compute", Block(ops, name=f"stage{st}", overlap=overlap),
                            deps=(prev,) if prev is not None else ())
            if st < pp - 1:
                prev = graph.add(rank, "comm", SendRecv("send", rank + self.tp, 2.0 * T * m.hidden, st + 1),
                                 deps=(blk,), category="pp")
        return graph
