"""The operations of a serving iteration of a DeepSeek-V4 model (``attention: {kind:
dsv4}``, workloads/dsv4.py), with the MoE layers, expert parallelism and two-batch overlap
of workloads/inference/moe_ops.py.

Cache per sequence and layer: the last ``window`` raw entries (a fixed state:
``state_bytes_per_seq``, with the compressors' fp32 pending rows), and per context token
1 / r compressed entries plus, on CSA layers, 1 / r indexer keys (``kv_bytes_per_token``);
under an FP8 cache an entry is DeepSeek's mixed format (FP8 with UE8M0 scales, BF16 RoPE
dimensions) and an indexer key FP8 with an fp32 scale (workloads/dsv4.py
``entry_bytes``); the single KV head is replicated over TP, as MLA's latent is. Per iteration of T new tokens (prefill and decode) and layer of ratio r:

- token kernels (moe_ops' layer with mHC): ``hc_pre`` / ``hc_post`` around each
  sub-layer, the fused query-down and KV projection (T, q_lora + head_dim, h), the
  query's up projection split by heads, the grouped output projection (o_groups / tp
  batched GEMMs) and the row-parallel ``wo_b``;
- r > 0: the compressor's GEMM (T, 2 coff head_dim, h) and pooling; CSA: the indexer's
  query, head-weight and compressor GEMMs (replicated over TP) and its scores against
  every compressed entry (prefill: pairs / r; decode: each sequence's context / r keys
  read once) and the top-k;
- the sparse attention: prefill pairs over the window (at most tokens x window) and the
  selected (CSA: at most tokens x top-k) or all (HCA: pairs / r) compressed entries,
  priced as fused attention; decode, per sequence the window plus min(top-k, L / r) (CSA)
  or L / r (HCA) entries of its mean context L, read once for all heads, priced as the
  latent-attention decode kernel class (FlashMLA's sparse decode) at 2 heads (2 head_dim)
  FLOPs per entry.
"""

from __future__ import annotations

import math
from collections import Counter

from hw_models.errors import InfeasiblePlanError
from workloads import dsv4 as spec
from workloads.graph import Compute
from workloads.inference.moe_ops import MoEIterationOps
from workloads.inference.ops import ATTENTION_DTYPE, Shape
from workloads.layers import mem, tp_comm
from workloads.moe import is_moe_layer

FP32 = 4


class DSV4IterationOps(MoEIterationOps):

    def setup_dsv4(self) -> None:
        att = spec.dsv4(self.model)
        if att.o_groups % self.tp:
            raise InfeasiblePlanError(f"tp={self.tp} must divide the model's {att.o_groups} "
                                      f"output groups (o_groups)")

    def _stage_layers(self) -> list[int]:
        """The layers of the first pipeline stage (the largest: ceil(layers / pp))."""
        return list(range(math.ceil(self.model.layers / self.pp)))

    def kv_bytes_per_token(self) -> float:
        """Compressed entries and indexer keys per context token on one GPU (its share of
        the ep GPUs' sequences), over a stage's layers."""
        m = self.model
        per = sum(spec.kv_bytes_per_token(m, i, self.kv_bytes) for i in range(m.layers))
        return per / m.layers * len(self._stage_layers()) / self.ep

    def state_bytes_per_seq(self) -> float:
        """The window's raw entries and the compressors' pending rows of one sequence."""
        m = self.model
        per = sum(spec.state_bytes(m, i, self.kv_bytes) for i in range(m.layers)) / m.layers
        return per * len(self._stage_layers()) / self.ep

    def kinds(self) -> Counter:
        m = self.model
        return Counter((is_moe_layer(m, i), spec.ratio(m, i)) for i in range(m.layers))

    # ---- token kernels ------------------------------------------------------------
    def _attn_projections(self, T: int, absorbed: bool = False) -> tuple[list, list]:
        """Projections before and after the core attention (``absorbed`` has no meaning
        here: the cached entry is the key and the value)."""
        m, att = self.model, spec.dsv4(self.model)
        ctx = self._ctx(T)
        e, lh, hd = ctx.act_bytes, ctx.local_heads, att.head_dim
        groups = att.o_groups // self.tp
        k = m.heads * hd // att.o_groups
        pre = [self._gemm(T, att.q_lora_rank + hd, m.hidden, "dsv4_qkv_down"),
               mem(ctx, "norm", 2 * e * T * (att.q_lora_rank + hd), "dsv4_qkv_norm"),
               self._gemm(T, lh * hd, att.q_lora_rank, "dsv4_q_up"),
               mem(ctx, "elementwise", 2 * e * T * lh * hd, "dsv4_q_scale_rope"),
               mem(ctx, "elementwise", T * (e * hd + spec.entry_bytes(att, self.kv_bytes)), "window_write")]
        o_down = Compute("gemm", 2.0 * T * att.o_lora_rank * k * groups,
                         groups * (2.0 * (T * k + T * att.o_lora_rank) + self.w_bytes * k * att.o_lora_rank),
                         self.precision, (T, att.o_lora_rank, k), name="dsv4_o_down")
        return pre, [o_down, self._gemm(T, m.hidden, groups * att.o_lora_rank, "attn_proj")]

    def _hc(self, T: int, post: bool) -> list:
        """hc_pre (mixing GEMM, Sinkhorn, weighted sum) or hc_post of one sub-layer."""
        hc, h, ctx = self.model.hyper_connections, self.model.hidden, self._ctx(T)
        e = ctx.act_bytes
        if hc is None:
            return [mem(ctx, "elementwise", 3 * e * T * h, "residual_add")] if post else []
        c = hc.copies
        if post:
            return [mem(ctx, "elementwise", e * T * (2 * c + 1) * h, "hc_post")]
        sink = Compute("elementwise", T * hc.sinkhorn_iters * 4.0 * c * c, FP32 * T * 2 * hc.mixes,
                       self.precision, name="hc_sinkhorn")
        mix = Compute("gemm", 2.0 * T * hc.mixes * c * h, e * T * c * h + FP32 * (T + c * h) * hc.mixes,
                      ATTENTION_DTYPE[self.precision], (T, hc.mixes, c * h), name="hc_pre_mix")
        return [mix, sink, mem(ctx, "elementwise", e * T * (c + 1) * h, "hc_pre_sum")]

    def _token_ops(self, T: int, moe: bool, T_all: int | None, decode_only: bool = False) -> list:
        ctx, h = self._ctx(T), self.model.hidden
        norm = 2 * ctx.act_bytes * T * h
        pre, post = self._attn_projections(T)
        return [*self._hc(T, False), mem(ctx, "norm", norm, "input_norm"), *pre, *post,
                *tp_comm(ctx, "all_reduce", "tp_attn_out"), *self._hc(T, True),
                *self._hc(T, False), mem(ctx, "norm", norm, "post_attn_norm"),
                *(self._experts(T, T_all, decode_only) if moe else self._dense_mlp(T)),
                *tp_comm(ctx, "all_reduce", "tp_mlp_out"), *self._hc(T, True)]

    # ---- ratio-dependent kernels ----------------------------------------------------
    def _compressor_ops(self, T: int, r: int) -> list:
        m, att = self.model, spec.dsv4(self.model)
        if not r:
            return []
        ctx, hd = self._ctx(T), att.head_dim
        e, c = ctx.act_bytes, spec.coff(att, r)
        ops = [self._gemm(T, 2 * c * hd, m.hidden, "dsv4_compress_proj"),
               mem(ctx, "elementwise", 2 * FP32 * T * c * hd + T / r * (e * hd + spec.entry_bytes(att, self.kv_bytes)),
                   "dsv4_compress_pool")]
        if spec.is_sparse(att, r):
            ih, ihd = att.index_heads, att.index_head_dim
            ops += [self._gemm(T, ih * ihd, att.q_lora_rank, "dsv4_index_q"),
                    self._gemm(T, ih, m.hidden, "dsv4_index_weights"),
                    self._gemm(T, 2 * 2 * ihd, m.hidden, "dsv4_index_compress_proj"),
                    mem(ctx, "elementwise", 2 * FP32 * T * 2 * ihd
                        + T / r * (e * ihd + spec.index_key_bytes(att, self.kv_bytes))
                        + 2 * e * T * ih * ihd, "dsv4_index_compress_rotate")]
        return ops

    def _index_ops(self, s: Shape, r: int) -> list:
        """The indexer's scores (prefill: pairs / r; decode: the cached index keys) and top-k."""
        att = spec.dsv4(self.model)
        if not (r and spec.is_sparse(att, r)):
            return []
        k, dtype = att.index_heads * att.index_head_dim, ATTENTION_DTYPE[self.precision]
        entries = s.prefill_pairs / r + s.decode_kv / r          # query-entry pairs scored
        queries = s.prefill_tokens + s.decode_seqs
        if not entries:
            return []
        nbytes = (2.0 * queries * k + spec.index_key_bytes(att, self.kv_bytes)
                  * (s.prefill_tokens + s.decode_kv) / r + FP32 * entries)
        return [Compute("gemm", 2.0 * entries * k, nbytes, dtype,
                        (queries, max(1, round(entries / max(1, queries))), k), name="dsv4_index_scores"),
                Compute("softmax", 0.0, FP32 * (entries + queries * att.index_topk), dtype,
                        name="dsv4_index_topk")]

    def attention_ops_of(self, s: Shape, r) -> list:
        """Compressor, indexer and the sparse attention of a layer of ratio ``r``."""
        m, att = self.model, spec.dsv4(self.model)
        heads, hd, dtype = max(1, m.heads // self.tp), att.head_dim, ATTENTION_DTYPE[self.precision]
        sparse = bool(r) and spec.is_sparse(att, r)
        T = s.prefill_tokens + s.decode_seqs
        ops = self._compressor_ops(T, r) + self._index_ops(s, r)
        if s.prefill_tokens:
            pairs = min(s.prefill_pairs, s.prefill_tokens * att.window)
            if r:
                pairs += min(s.prefill_pairs / r, s.prefill_tokens * att.index_topk) if sparse \
                    else s.prefill_pairs / r
            keys = max(1, round(pairs / s.prefill_tokens))
            ops.append(Compute("attention", 2.0 * heads * 2 * hd * pairs,
                               2.0 * 2 * heads * hd * s.prefill_tokens, dtype,
                               (heads, s.prefill_tokens, keys, hd), causal=True,
                               name="prefill_attn", flops_per_exp=2.0 * 2 * hd))
        if s.decode_seqs:
            ctx_len = s.decode_kv / s.decode_seqs
            per_seq = min(att.window, ctx_len)
            if r:
                per_seq += min(att.index_topk, ctx_len / r) if sparse else ctx_len / r
            entries = per_seq * s.decode_seqs
            io = 2.0 * 2 * s.decode_seqs * heads * hd
            ops.append(Compute("latent_attention", 2.0 * heads * 2 * hd * entries,
                               spec.entry_bytes(att, self.kv_bytes) * entries + io, dtype,
                               name="decode_attn"))
        return ops

    def attention_kind(self, i: int) -> int:
        return spec.ratio(self.model, i)

    def layer_ops_at(self, s: Shape, i: int, T_all: int | None = None) -> list:
        T = s.prefill_tokens + s.decode_seqs
        ops = self.token_ops(T, is_moe_layer(self.model, i), T_all, decode_only=s.prefill_tokens == 0)
        cut = next(j for j, o in enumerate(ops) if o.name == "dsv4_o_down")
        return ops[:cut] + self.attention_ops_of(s, spec.ratio(self.model, i)) + ops[cut:]
