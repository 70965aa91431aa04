"""Context parallelism: a sequence split over ``cp`` ranks that share the same weights.

Every CP rank holds s/cp tokens of each sequence; GEMMs, norms and activations shrink
by 1/cp (the layer ops are built on the local tokens). Causal load balancing (Megatron-
Core): the sequence is cut in 2 cp chunks and rank i holds chunks i and 2cp - 1 - i,
so every rank does 1/cp of the causal attention work. Only attention needs the other
ranks' keys and values:

* ``ring`` (Megatron-Core's default, p2p ring attention; Liu et al. 2023): cp - 1 steps,
  each passing a K,V block to the next rank while attention runs on the block it holds;
  in total an all-gather of K,V, hidden behind the blockwise attention step by step
  (``graph.Overlap``). The backward passes K,V again and their gradients the other way
  (all-gather + reduce-scatter volume). Block kernels see s/cp keys.
* ``allgather`` (Llama 3, Dubey et al. 2024 section 3.3.2; PyTorch's ``context_parallel``
  with its default all-gather rotation, what TorchTitan runs), as PyTorch implements it
  (torch/distributed/tensor/experimental/_attention.py): K,V all-gathered beside the
  causal kernel of the local tokens, then cp - 1 non-causal block kernels whose outputs
  are merged by log-sum-exp in fp32 element-wise passes; the backward all-gathers K,V
  again, accumulates dQ, dK, dV in fp32 step by step (``merge_bytes``) and passes the
  fp32 dK,dV to the next rank after every step (``ContextParallel._allgather_ops``);
  each call also copies K,V contiguous and sets up and casts back its fp32 buffers
  (``once_bytes``).
* ``ulysses`` (DeepSpeed-Ulysses, Jacobs et al. 2023): all-to-alls turn sequence shards
  into head shards before attention (Q, K, V) and back after it (output); the backward
  mirrors them. Needs cp to divide the local heads.
* ``hybrid``: Ulysses over the CP ranks inside one scale-up domain (``ulysses_size``),
  ring across them (Megatron-Core's ``hierarchical_context_parallel_sizes``).

Gradients are reduced over DP x CP (``ParallelPlan.dp_group`` includes the CP ranks).
"""

from __future__ import annotations

from dataclasses import replace

from hw_models.errors import InfeasiblePlanError
from workloads.graph import Collective, CommGroup, Compute, Overlap
from workloads.model import ModelSpec


def validate_cp(plan, model: ModelSpec) -> None:
    if plan.cp == 1:
        return
    if model.seq_len % (2 * plan.cp):
        raise InfeasiblePlanError(
            f"cp={plan.cp} needs seq_len={model.seq_len} to be a multiple of 2*cp = "
            f"{2 * plan.cp} (causal load balancing cuts the sequence in 2*cp chunks)")
    if plan.cp_kind in ("ulysses", "hybrid"):
        u = plan.ulysses
        if plan.cp % u:
            raise InfeasiblePlanError(f"cp_kind hybrid: ulysses_size={u} must divide cp={plan.cp}")
        local = model.heads // plan.tp
        if local % u:
            raise InfeasiblePlanError(
                f"cp_kind {plan.cp_kind}: the Ulysses group of {u} must divide the "
                f"{local} attention heads per TP rank")


def _kv_bytes(ctx, tokens: int, elem_bytes: float | None = None) -> float:
    """K and V of ``tokens`` tokens on one TP rank as the attention kernel sees them
    (every query head with ``repeat_kv``), 16-bit unless ``elem_bytes``."""
    e = ctx.act_bytes if elem_bytes is None else elem_bytes
    return 2.0 * e * tokens * ctx.attn_kv_heads * ctx.model.head_dim


def _qkv_bytes(ctx) -> float:
    m = ctx.model
    return ctx.act_bytes * ctx.tokens * (ctx.local_heads + 2 * ctx.local_kv_heads) * m.head_dim


def _out_bytes(ctx) -> float:
    return ctx.act_bytes * ctx.tokens * ctx.local_heads * ctx.model.head_dim


# Bytes per element that PyTorch's context_parallel moves besides the block kernels
# (_templated_ring_attention and its backward; bf16 activations, fp32 accumulators):
# forward, per merged step and output element: bf16 -> fp32 copy of the block output
# (2 + 4), out - block_out (4 + 4, 4), times sigmoid(lse - block_lse) (4, 4),
# out - that (4 + 4, 4) and the chunk/cat of a partial update (4, 4): 42; per K,V element
# the torch.cat of K and V for the next exchange (2, 2): 4. Backward, per step: dQ += block
# dQ in fp32 (4 + 2, 4) = 10 per Q element; dK, dV likewise plus the fp32 cat passed to the
# next rank (4, 4): 18 per K,V element.
MERGE_FWD_OUT, MERGE_FWD_KV = 42.0, 4.0
ACCUM_BWD_Q, ACCUM_BWD_KV = 10.0, 18.0
# Passes each call makes once, whatever cp (same source). Forward: K and V made contiguous
# (``key.contiguous()`` on the model's transposed (b, s, h, d) -> (b, h, s, d) views: 2, 2)
# = 4 per K,V element; step 0's block output to fp32 (2 + 4, ``_SDPAMerger.step``) and
# the merged output back to 16-bit (4, 2, ``results``) = 12 per output element.
# Backward: K, V contiguous again (4 per K,V element), the fp32 accumulators zeroed
# (``torch.zeros_like``: 4 per Q and per K,V element), dQ and the dK,dV received after
# the loop cast back to 16-bit (4, 2): 10 per Q element, 14 per K,V element.
ONCE_FWD_OUT, ONCE_FWD_KV = 12.0, 4.0
ONCE_BWD_Q, ONCE_BWD_KV = 10.0, 14.0
# The same loop traced by torch.compile (``cp_compiled``; TorchTitan compiles each block
# with the attention inside, PyTorch 1963fc8): Inductor fuses each step's pointwise chain
# into one kernel and drops what is never read. Forward, per merged step: read the fp32
# output and the 16-bit block output, write the fp32 output (4 + 2, 4) = 10 per output
# element; the K,V cats of the later steps feed an all-gather rotater that no longer reads
# them (dead code). Once: K,V contiguous (4) and step 0's cat for the all-gather (4) = 8 per
# K,V element; the casts of the output to and from fp32 fold into the first and last
# merges (0, an upper bound: they save 2 bytes each there). Backward, per step: dQ += block
# dQ (4 + 2, 4) = 10; dK,dV added into the received fp32 buffer and written straight into
# the cat that is sent (4 + 2, 4) = 10. Once: K,V contiguous (4) and cat for the all-gather
# (4), the received dK,dV back to 16-bit (4, 2) = 14 per K,V element; the fp32 zeros and
# dQ's cast fold into the first and last accumulations (0 per Q element).
COMPILED = {"merge": (10.0, 0.0), "accum": (10.0, 10.0), "once": (0.0, 8.0),
            "once_bwd": (0.0, 14.0)}
EAGER = {"merge": (MERGE_FWD_OUT, MERGE_FWD_KV), "accum": (ACCUM_BWD_Q, ACCUM_BWD_KV),
         "once": (ONCE_FWD_OUT, ONCE_FWD_KV), "once_bwd": (ONCE_BWD_Q, ONCE_BWD_KV)}


def _elements(ctx) -> tuple[float, float]:
    """Q (= output) and K+V elements of one rank's local tokens (K,V as the kernel sees them)."""
    m = ctx.model
    return (ctx.tokens * ctx.local_heads * m.head_dim,
            2.0 * ctx.tokens * ctx.attn_kv_heads * m.head_dim)


def merge_bytes(ctx, steps: int, backward: bool, compiled: bool = False) -> float:
    """Element-wise bytes of ``steps`` merged blocks on one rank (PyTorch's CP), eager or
    traced by torch.compile (``compiled``)."""
    q, kv = _elements(ctx)
    per_q, per_kv = (COMPILED if compiled else EAGER)["accum" if backward else "merge"]
    return steps * (per_q * q + per_kv * kv)


def once_bytes(ctx, backward: bool, compiled: bool = False) -> float:
    """Element-wise bytes PyTorch's CP moves once per attention call on one rank (the
    contiguous K,V copies, the fp32 accumulators' set-up and the casts back)."""
    q, kv = _elements(ctx)
    per_q, per_kv = (COMPILED if compiled else EAGER)["once_bwd" if backward else "once"]
    return per_q * q + per_kv * kv


def ring_correction_bytes(ctx, r: int, backward: bool) -> float:
    """Element-wise bytes of Transformer Engine's p2p ring on one rank besides its
    kernels (``AttnFuncWithCPAndKVP2P``, 16-bit, causal and load-balanced), per ring step
    the slowest rank's, since each step waits for its neighbours. Forward, per output
    element: the first step's partial output scaled into the output (read, write), each
    later one added in (``flash_attn_fwd_out_correction``, fused: read both, write one);
    the last rank corrects the whole output at every step. Backward: the first step's dQ
    and dK,dV copied; at each later step a rank adds into half of one and all of the
    other (rank 0: the second half of dQ, all of dK,dV; the last rank the reverse)."""
    e = ctx.act_bytes
    q, kv = _elements(ctx)
    if not backward:
        return e * (2 + 3 * (r - 1)) * q
    return e * (2 * (q + kv) + 3 * (r - 1) * max(q / 2 + kv, q + kv / 2))


def ring_blocks(op: Compute, flops: float, heads: int, tokens: int, r: int) -> tuple[Compute, ...]:
    """The kernels of a load-balanced causal p2p ring of ``r`` steps on one rank, as
    Transformer Engine runs them (``AttnFuncWithCPAndKVP2P``, what Megatron-Core's ring
    CP calls): step 0 is the causal kernel of the rank's own two chunks (``tokens``
    queries on ``tokens`` keys); each of the other r - 1 steps is a kernel without a mask
    of the same work: all local queries on the first half of the block received (steps
    up to the rank's index) or the second half of the queries on the whole block (the
    later steps). At every step the last rank runs the half-keys kernel, so that shape,
    ``tokens / 2`` keys, paces the ring. ``flops``: the rank's whole attention work."""
    per_step = flops / r
    d = op.shape[3]
    first = replace(op, flops=per_step, bytes=op.bytes / r, shape=(heads, tokens, tokens, d))
    rest = replace(op, flops=per_step * (r - 1), bytes=op.bytes * (r - 1) / r,
                   shape=(heads, tokens, tokens // 2, d), causal=False, name=f"{op.name}_cp_blocks")
    return first, rest


class ContextParallel:
    """Rewrites one rank's layer ops (built on its s/cp tokens) for context parallelism."""

    def __init__(self, plan, cp_group: tuple[int, ...]):
        self.cp, self.kind = plan.cp, plan.cp_kind
        self.compiled = plan.cp_compiled
        self.ulysses = {"ring": 1, "allgather": 1, "ulysses": plan.cp}.get(self.kind, plan.ulysses)
        self.ring = self.cp // self.ulysses
        self.u_group = CommGroup(cp_group[:self.ulysses], "cp")
        self.r_group = CommGroup(cp_group[::self.ulysses], "cp")

    def rewrite(self, ctx, ops: list, backward: bool) -> list:
        out = []
        for op in ops:
            if isinstance(op, Compute) and op.op_class == "attention" and op.shape:
                out += self._attention_ops(ctx, op, backward)
            else:
                out.append(op)
        return out

    def _attention_ops(self, ctx, op: Compute, backward: bool) -> list:
        s_local = ctx.tokens // ctx.micro_batch
        # ``op`` is causal attention over the s/cp local tokens: 4 bh (s/cp)^2 d / 2 FLOPs.
        # Load-balanced, a rank does 1/cp of the whole sequence's 4 bh s^2 d / 2, which is
        # cp times that (also with Ulysses: bh/u heads over s u/cp tokens, ring over cp/u).
        bh, _, _, d = op.shape
        pre, post = [], []
        if self.ulysses > 1:         # sequence shards -> head shards and back
            a2a_in = Collective("all_to_all", _qkv_bytes(ctx), self.u_group, name="cp_a2a_qkv")
            a2a_out = Collective("all_to_all", _out_bytes(ctx), self.u_group, name="cp_a2a_out")
            pre, post = ([a2a_out], [a2a_in]) if backward else ([a2a_in], [a2a_out])
        r = self.ring
        kv_tokens = s_local * self.ulysses          # tokens a rank's ring block holds
        heads_share = bh // self.ulysses            # heads after the Ulysses exchange
        work = replace(op, flops=op.flops * self.cp, shape=(heads_share, kv_tokens, kv_tokens * r, d))
        if r == 1:
            return [*pre, work, *post]
        kv = _kv_bytes(ctx, kv_tokens * r) / self.ulysses   # the ring group's full K,V
        hidden = [Collective("all_gather", kv, self.r_group, name="cp_kv_all_gather")]
        if backward:
            hidden.append(Collective("reduce_scatter", kv, self.r_group, name="cp_dkv_reduce_scatter"))
        if self.kind == "allgather":
            return [*pre, *self._allgather_ops(ctx, op, backward, kv), *post]
        blocks = ring_blocks(op, op.flops * self.cp, heads_share, kv_tokens, r)
        fix = Compute("elementwise", 0.0, ring_correction_bytes(ctx, r, backward), op.dtype,
                      name="cp_grad_accumulate" if backward else "cp_out_correction")
        return [*pre, Overlap(blocks, tuple(hidden), r - 1, "cp_ring_attention"), fix, *post]

    def _allgather_ops(self, ctx, op: Compute, backward: bool, kv: float) -> list:
        """PyTorch's ``_templated_ring_attention`` (and its backward) with the all-gather
        rotater and load balancing, per layer and rank. Step 0 runs the causal kernel of
        the local queries and keys (``op`` itself) while the K,V all-gather, issued just
        before it, runs beside it; the other cp - 1 steps each run a non-causal kernel of
        the same work (all local queries on half the block's keys, or half the queries on
        all of them), then the fp32 merge passes. The backward all-gathers K,V again
        beside step 0 and sends the fp32 dK,dV of each step to the next rank (one
        all-to-all per step, always, whatever the rotater) beside the next step's kernel;
        the last one is waited for after the loop. The fp32 passes: merges after the cp - 1
        blocks forward, accumulation after all cp steps backward, and each call's
        contiguous K,V copies, accumulator set-up and casts back (``once_bytes``)."""
        cp, s_local = self.cp, op.shape[1]
        half = s_local // 2
        gather = Collective("all_gather", kv, self.r_group, name="cp_kv_all_gather")
        rest = replace(op, flops=op.flops * (cp - 1), shape=(op.shape[0], s_local, half, op.shape[3]),
                       causal=False, name=f"{op.name}_cp_blocks")
        # The forward merges the cp - 1 blocks after the first; the backward accumulates
        # and sends after every one of the cp steps, step 0 included.
        steps = cp if backward else cp - 1
        merge = Compute("elementwise", 0.0, merge_bytes(ctx, steps, backward, self.compiled),
                        op.dtype, name="cp_grad_accumulate" if backward else "cp_merge")
        once = Compute("elementwise", 0.0, once_bytes(ctx, backward, self.compiled), op.dtype,
                       name="cp_buffers_bwd" if backward else "cp_buffers")
        dkv = _kv_bytes(ctx, s_local * cp, 4.0)             # fp32 dK,dV of the whole ring
        ring = Collective("reduce_scatter", dkv, self.r_group, name="cp_dkv_ring")
        last = Collective("reduce_scatter", dkv / (cp - 1), self.r_group, name="cp_dkv_last")
        if self.compiled:
            # Traced, a functional collective is waited right after it is issued
            # (``_maybe_wrap_tensor``: ``wait_tensor`` when tracing, instead of the eager
            # AsyncCollectiveTensor waited at first use), and Inductor reorders collectives
            # only with ``reorder_for_compute_comm_overlap`` (off by default): the
            # all-gather runs before step 0's kernel, each dK,dV send after its step's.
            if not backward:
                return [gather, op, rest, merge, once]
            return [gather, op, rest, ring, last, merge, once]
        first = Overlap((op,), (gather,), 1, "cp_kv_all_gather_overlap", concurrent=True,
                        nccl=True)
        if not backward:
            return [first, rest, merge, once]
        return [first, Overlap((rest,), (ring,), cp - 1, "cp_dkv_ring_overlap", concurrent=True,
                               nccl=True),
                last, merge, once]
