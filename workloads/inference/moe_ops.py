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
decode: workloads/moe_dispatch.py). Two-batch overlap runs the batch as two halves
(``micro_batches``). A replica's KV capacity is ep GPUs' worth.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

from workloads.graph import Block, Compute, ExecutionGraph, SendRecv
from workloads.inference.ops import ATTENTION_DTYPE, IterationOps, Shape, paged_decode_op
from workloads.layers import LayerContext, mem, tp_comm
from workloads.moe import (
    expert_params,
    is_moe_layer,
    is_window_layer,
    latent_proj_params,
    mla,
    token_width,
)
from workloads.moe_dispatch import route
from workloads.moe_layers import make_context


def _share(x: int, ep: int) -> int:
    return -(-x // ep)


def split(s: Shape, n: int) -> Shape:
    """One of ``n`` equal shares of an iteration's batch: one GPU's under attention data
    parallelism (n = ep), one micro-batch under two-batch overlap (n = 2: every kernel runs
    once per half)."""
    if n == 1:
        return s
    return Shape(_share(s.prefill_tokens, n), _share(s.prefill_pairs, n), s.prefill_kv,
                 _share(s.decode_seqs, n), _share(s.decode_kv, n), _share(s.logits, n),
                 _share(s.prefill_seqs, n))


def latent_decode_op(heads: int, kv_lora: int, rope: int, kv_tokens: int, queries: int,
                     kv_bytes: float, dtype: str, q_per_seq: int = 1) -> Compute:
    """MLA decode attention with absorbed weights over ``kv_tokens`` cached latents (all
    sequences), ``queries`` sequences each with ``q_per_seq`` query tokens (2 under
    multi-token prediction): every head scores the (kv_lora + rope) latent and sums the
    kv_lora part, 2 h (2 kv_lora + rope) FLOPs per cached token per query token, in the
    attention dtype (FlashMLA computes in BF16); the cache is read once, each query and
    output once."""
    latent = kv_lora + rope
    flops = 2.0 * heads * (latent + kv_lora) * kv_tokens * q_per_seq
    io = 2.0 * queries * q_per_seq * heads * (latent + kv_lora)
    return Compute("latent_attention", flops, latent * kv_bytes * kv_tokens + io, dtype,
                   name="decode_attn")


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
        # LatentMoE's latent projections are replicated over TP (ReplicatedLinear)
        dup = latent_proj_params(m) * sum(is_moe_layer(m, i) for i in range(m.layers))
        split = (m.params - experts - dup + experts / self.ep) / self.tp + dup
        return split * self.w_bytes / self.pp

    def kinds(self) -> Counter:
        m = self.model
        return Counter((is_moe_layer(m, i), is_window_layer(m, i)) for i in range(m.layers))

    # ---- kernels that depend on the token count only ------------------------------
    def _attn_projections(self, T: int, absorbed: bool = False) -> list:
        """The kernels before and after the core attention. MLA with a q low-rank projection
        runs the q and kv down projections as one GEMM (DeepSeek's decode profile; SGLang's
        fused q_a / kv_a projection) and a rotary kernel on the rope parts; ``absorbed``
        (decode): the latent is not up-projected, the query's nope part is multiplied into
        the latent space (W_UK) before the core attention and the output out of it (W_UV)
        after, as two batched matmuls per head in 16-bit (DeepSeek-V2 section 2.1)."""
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
        latent, r = att.kv_lora_rank + att.qk_rope_head_dim, att.qk_rope_head_dim
        pre = ([self._gemm(T, att.q_lora_rank + latent, m.hidden, "mla_qkv_down"),
                self._gemm(T, lh * att.qk_head_dim, att.q_lora_rank, "mla_q_up")]
               if att.q_lora_rank else [self._gemm(T, lh * att.qk_head_dim, m.hidden, "mla_q"),
                                        self._gemm(T, latent, m.hidden, "mla_kv_down")])
        pre.append(mem(ctx, "elementwise", 2 * e * T * (lh + 1) * r, "rope"))
        post = []
        if absorbed:
            pre.append(self._head_matmul(T, lh, att.qk_nope_head_dim, att.kv_lora_rank, "mla_absorb_uk"))
            post.append(self._head_matmul(T, lh, att.kv_lora_rank, att.v_head_dim, "mla_absorb_uv"))
        else:
            pre.append(self._gemm(T, lh * (att.qk_nope_head_dim + att.v_head_dim), att.kv_lora_rank,
                                  "mla_kv_up"))
        pre.append(mem(ctx, "elementwise", T * latent * (e + self.kv_bytes), "latent_write"))
        return pre, [*post, self._gemm(T, m.hidden, lh * att.v_head_dim, "attn_proj")]

    def _head_matmul(self, T: int, heads: int, k: int, n: int, name: str) -> Compute:
        """``heads`` matmuls [T, k] x [k, n] batched, 16-bit weights and activations."""
        dtype = ATTENTION_DTYPE[self.precision]
        nbytes = 2.0 * heads * (T * k + T * n + k * n)
        return Compute("gemm", 2.0 * heads * T * k * n, nbytes, dtype, (T * heads, n, k), name=name)

    def _experts(self, T: int, T_all: int | None = None, decode_only: bool = False) -> list:
        """This GPU's T tokens' routing, and its E/ep experts' GEMMs over the routed tokens
        of all T_all tokens of the replica that land on them (T k on average)."""
        m, ctx = self.model, self._ctx(T)
        E, k, h, d = m.moe.experts, m.moe.top_k, m.hidden, token_width(m)
        f = m.moe.expert_ffn_hidden // self.tp
        up = f * (2 if m.gated else 1)
        T_all = T_all or T
        active = E / self.ep * (1 - (1 - k / E) ** T_all)
        per = max(1, round(T * k / active))
        ops = [self._gemm(T, E, h, "router"), mem(ctx, "softmax", 3 * 4 * T * E, "router_topk")]
        for n_out, n_in, name in ((up, d, "expert_up"), (d, f, "expert_down")):
            nbytes = 2.0 * T * k * (n_in + n_out) + self.w_bytes * active * n_in * n_out
            ops.append(Compute("gemm", 2.0 * T * k * n_in * n_out, nbytes, self.precision,
                               (per, n_out, n_in), name=name))
        ops.insert(3, mem(ctx, "elementwise", (3 if m.gated else 2) * ctx.act_bytes * T * k * f,
                          "expert_activation"))
        if self.moe_ctx.dispatcher != "deepep":
            # the Triton fused_moe path (vLLM, SGLang): block alignment before the GEMMs,
            # the sum over the top-k outputs after them; DeepEP's dispatch lays the tokens
            # out per expert and its combine sums them
            ops[2:2] = self._align(T, k, E // self.ep)
            ops.append(mem(ctx, "elementwise", ctx.act_bytes * T * d * (k + 1), "moe_sum"))
        if self.ep > 1:          # dispatch before the experts, combine after them
            mctx = replace(self.moe_ctx, low_latency=self.low_latency(decode_only))
            rctx = LayerContext(m.with_seq_len(max(1, T)), 1, 1, False, self.precision,
                                self.group, moe=mctx)
            ops[2:2] = route(rctx, "dispatch", out=False)
            ops += route(rctx, "combine", out=True)
        if m.moe.latent_size:
            # LatentMoE: vLLM's NemotronHMoE (vllm/model_executor/models/nemotron_h.py)
            # projects the routed tokens with ReplicatedLinear fc1_latent_proj /
            # fc2_latent_proj: whole weights on every TP rank, over all T tokens
            lat = m.moe.latent_size
            ops.insert(2, self._gemm(T, lat, h, "fc1_latent_proj"))
            ops.append(self._gemm(T, h, lat, "fc2_latent_proj"))
        if m.moe.shared_experts:
            fs = m.moe.shared_experts * m.moe.shared_ffn // self.tp
            ops += [self._gemm(T, fs * (2 if m.gated else 1), h, "shared_up"),
                    mem(ctx, "elementwise", (3 if m.gated else 2) * ctx.act_bytes * T * fs, "shared_act"),
                    self._gemm(T, h, fs, "shared_down")]
        return ops

    def _align(self, T: int, k: int, experts: int) -> list:
        """vLLM's moe_align_block_size (csrc/moe/moe_align_sum_kernels.cu) before the
        expert GEMMs: the T k routed slots grouped by expert and each expert's group padded
        to the GEMM's BLOCK_SIZE_M (16 up to as many tokens as experts, else 64: vLLM's
        default Triton config); one kernel reads the expert ids and writes the padded
        sorted-slot array (T k + E (B - 1) int32), the expert of every block and the prefix
        sums, a latency floor at small batches (``moe_align``); with more than 64 experts
        or 1024 slots a second kernel scatters the slots into place."""
        n, block = T * k, (16 if T <= experts else 64)
        padded = n + experts * (block - 1)
        ctx = self._ctx(T)
        ops = [Compute("moe_align", 0.0, 4.0 * (n + padded + -(-padded // block) + experts + 1),
                       ctx.dtype, name="moe_align")]
        if experts > 64 or n >= 1024:
            ops.append(mem(ctx, "elementwise", 4.0 * 2 * n, "moe_sort"))
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
        pre, post = self._attn_projections(T, absorbed=decode_only and mla(self.model) is not None)
        return [mem(ctx, "norm", norm, "input_norm"), *pre, *post,
                *tp_comm(ctx, "all_reduce", "tp_attn_out"),
                mem(ctx, "elementwise", 3 * e * T * h, "residual_add"),
                mem(ctx, "norm", norm, "post_attn_norm"),
                *(self._experts(T, T_all, decode_only) if moe else self._dense_mlp(T)),
                *tp_comm(ctx, "all_reduce", "tp_mlp_out"),
                mem(ctx, "elementwise", 3 * e * T * h, "residual_add")]

    # ---- two-batch overlap ----------------------------------------------------------
    def tbo_stages(self, s: Shape, moe: bool, window: bool, T_all: int) -> list[tuple]:
        """One layer under two-batch overlap as the stages DeepSeek's inference profile
        shows (deepseek-ai/profile-data README figures; SGLang's TBO runs the same
        operation orders, named after them), both micro-batches (``s``: one GPU's share of
        one of them) together: each stage's EP transfer runs beside that stage's compute
        only, and the next stage waits for both. Prefill (DeepEP normal kernels):
        [ATTN(1) + SHARED(0) | COMBINE(0)], [ATTN(0) | DISPATCH(1)], [MLP(1) | DISPATCH(0)],
        [MLP(0) + SHARED(1) | COMBINE(1)]; decode (low-latency kernels), twice with the
        micro-batches swapped: [SHARED(0) + ATTN-0(1) | DISPATCH(0)], [MLP(0)],
        [ATTN-1(1) | COMBINE(0)] (ATTN-0: the MLA projections before the core attention;
        ATTN-1: core attention, output projection, routing gate). A layer without EP
        transfers runs its kernels once per micro-batch."""
        dec = s.prefill_tokens == 0
        T = s.prefill_tokens + s.decode_seqs
        ops = self.token_ops(T, moe, T_all, decode_only=dec)
        core = self.attention_ops_of(s, window)
        ep = [i for i, o in enumerate(ops) if getattr(getattr(o, "group", None), "dim", None) == "ep"]
        if not ep:
            return [tuple(ops[:1] + core + ops[1:]) * 2]
        # after the core attention: W_UV's absorbed product (decode), the output projection
        cut = next(j for j, o in enumerate(ops) if o.name in ("mla_absorb_uv", "attn_proj"))
        d_end = next(j for j in range(ep[0], len(ops)) if j not in ep)
        c0 = next(j for j in ep if j > d_end)
        c_end = next((j for j in range(c0, len(ops)) if j not in ep), len(ops))
        a0, a1 = ops[:cut], core + ops[cut:ep[0]]
        disp, mlp, comb, shared = ops[ep[0]:d_end], ops[d_end:c0], ops[c0:c_end], ops[c_end:]
        if dec:
            return [(*shared, *a0, *disp), tuple(mlp), (*a1, *comb)] * 2
        attn = a0 + a1
        return [(*attn, *shared, *comb), (*attn, *disp), (*mlp, *disp), (*mlp, *shared, *comb)]

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
                               causal=True, name="prefill_attn", flops_per_exp=2.0 * (d_qk + d_v)))
        if s.decode_seqs:
            if att is None:
                kvh = max(1, m.kv_heads_ // self.tp)
                ops.append(paged_decode_op(heads, kvh, m.head_dim, s.decode_seqs, kv,
                                           self.kv_bytes, e, self.precision))
            else:
                ops.append(latent_decode_op(heads, att.kv_lora_rank, att.qk_rope_head_dim, kv,
                                            s.decode_seqs, self.kv_bytes,
                                            ATTENTION_DTYPE[self.precision]))
        return ops

    # ---- graph (the reference the cached ``time`` agrees with) --------------------
    def layer_ops_at(self, s: Shape, i: int, T_all: int | None = None) -> list:
        T = s.prefill_tokens + s.decode_seqs
        ops = self.token_ops(T, is_moe_layer(self.model, i), T_all,
                             decode_only=s.prefill_tokens == 0)
        # after the core attention: W_UV's absorbed product (decode), the output projection
        cut = next(j for j, o in enumerate(ops) if o.name in ("mla_absorb_uv", "attn_proj"))
        return ops[:cut] + self.attention_ops_of(s, self.attention_kind(i)) + ops[cut:]

    def attention_kind(self, i: int):
        """What ``attention_ops_of`` needs of layer ``i``: whether it is windowed."""
        return is_window_layer(self.model, i)

    def _tbo_blocks(self, graph: ExecutionGraph, rank: int, s: Shape, T_all: int):
        """The iteration under two-batch overlap (no pipeline): the embedding of both
        micro-batches, each layer's stages (``tbo_stages``) as blocks whose EP transfers
        hide behind that block's compute only, then the output layer of both."""
        m, T = self.model, s.prefill_tokens + s.decode_seqs
        prev = graph.add(rank, "compute", Block((self.embed_op(T),) * 2, name="embed"), deps=())
        for i in range(m.layers):
            for j, ops in enumerate(self.tbo_stages(s, is_moe_layer(m, i), self.attention_kind(i), T_all)):
                prev = graph.add(rank, "compute", Block(ops, name=f"layer{i}.{j}", overlap=("ep",)),
                                 deps=(prev,))
        return graph.add(rank, "compute", Block(tuple(self.head_ops(s)) * 2, name="head"), deps=(prev,))

    def build(self, s: Shape) -> ExecutionGraph:
        m, pp, mbs = self.model, self.pp, self.micro_batches
        s = split(s, mbs)
        T_all = s.prefill_tokens + s.decode_seqs
        s = split(s, self.ep)
        T = s.prefill_tokens + s.decode_seqs
        per_stage = [m.layers // pp + (1 if i < m.layers % pp else 0) for i in range(pp)]
        graph = ExecutionGraph(self.tp * pp * self.ep,
                               simulated_ranks=tuple(i * self.tp for i in range(pp)))
        if mbs > 1:                         # two-batch overlap: the layers' stages in turn
            self._tbo_blocks(graph, 0, s, T_all)
            return graph
        prev, first = None, 0
        for st, n_layers in enumerate(per_stage):
            rank = st * self.tp
            ops = tuple(o for i in range(first, first + n_layers) for o in self.layer_ops_at(s, i, T_all))
            first += n_layers
            if st == 0:
                ops = (self.embed_op(T), *ops)
            if st == pp - 1:
                ops = (*ops, *self.head_ops(s))
            if prev is not None:
                prev = graph.add(rank, "comm", SendRecv("recv", rank - self.tp, 2.0 * T * m.residual_width, st),
                                 deps=(), category="pp")
            blk = graph.add(rank, "compute", Block(ops, name=f"stage{st}", overlap=()),
                            deps=(prev,) if prev is not None else ())
            if st < pp - 1:
                prev = graph.add(rank, "comm", SendRecv("send", rank + self.tp, 2.0 * T * m.residual_width, st + 1),
                                 deps=(blk,), category="pp")
        return graph
