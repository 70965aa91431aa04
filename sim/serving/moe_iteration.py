"""The time of one serving iteration of a MoE / MLA / windowed model: the operations of
workloads/inference/moe_ops.py priced per kind of layer and cached by batch shape, like
sim/serving/iteration.py does for dense models."""

from __future__ import annotations

from sim.costs import contention, exposed_comm
from sim.serving.iteration import IterationModel
from workloads.graph import Block
from workloads.inference.moe_ops import MoEIterationOps, split
from workloads.inference.ops import Shape


class MoEIterationModel(MoEIterationOps, IterationModel):
    """``ep`` > 1: a replica of ep x tp x pp GPUs with attention data-parallel over ep."""

    def __init__(self, model, tp: int, pp: int, precision: str, compute, network,
                 kv_bytes: int | None = None, **moe):
        IterationModel.__init__(self, model, tp, pp, precision, compute, network, kv_bytes)
        self.configure(**moe)

    def _compose(self, s: Shape) -> float:
        """Per kind of layer: its token-count kernels (cached) and its attention; EP
        communication summed apart so that overlap can hide it under the iteration's
        compute. Two-batch overlap (``micro_batches`` > 1) runs its stages instead
        (``_compose_tbo``)."""
        self.evaluations += 1
        if self.micro_batches > 1:
            return self._compose_tbo(s)
        T_all = s.prefill_tokens + s.decode_seqs
        dec = s.prefill_tokens == 0
        s = split(s, self.ep)
        T = s.prefill_tokens + s.decode_seqs
        total = comm = held = slow = slow_held = 0.0
        for (moe, window), n in self.kinds().items():
            per = self._part(("layer", moe, T, T_all, dec),
                             lambda moe=moe: self.token_ops(T, moe, T_all, True, dec))
            per += sum(self._costs.op_time(o) for o in self.attention_ops_of(s, window))
            total += n * per
            key = ("ep", moe, T, T_all, dec)
            if key not in self._parts:      # the layer's EP transfers, tallied as a block's
                ops = self.token_ops(T, moe, T_all, False, dec)
                self._parts[key] = self._costs.tally(ops, [self._costs.op_time(o) for o in ops],
                                                     ("ep",))
            tally = self._parts[key]
            comm += n * sum(tally.parts.values())
            held += n * tally.held                    # seconds x SMs the transfers hold
            slow += n * sum(tally.slow.values())      # DeepEP's normal internode kernels
            slow_held += n * tally.slow_held
        total += self._part(("ends", T, s.logits), lambda: [self.embed_op(T), *self.head_ops(s)])
        if self.overlap and self.pp == 1:     # EP comm under the iteration's compute
            extra, extra_held = contention(slow, slow_held, total)
            comm, held = comm + extra, held + extra_held
            sms = self._costs.compute.gpu.sms or 0
            comm = exposed_comm(comm, total, held / sms if sms else 0.0)
        hop = self.network.p2p_time(0, self.tp, 2.0 * T * self.model.residual_width) if self.pp > 1 else 0.0
        return total + comm + (self.pp - 1) * hop

    def _compose_tbo(self, s: Shape) -> float:
        """Two-batch overlap: per kind of layer the stages of ``tbo_stages`` (cached), each
        its compute plus the EP time it leaves exposed (with DeepEP's normal kernels, also
        the compute their SMs take), then the embedding and output layer of both halves."""
        s = split(s, 2)
        T_all = s.prefill_tokens + s.decode_seqs
        s = split(s, self.ep)
        T = s.prefill_tokens + s.decode_seqs
        total = 0.0
        for (moe, window), n in self.kinds().items():
            key = ("tbo", moe, window, s)
            if key not in self._parts:
                self._parts[key] = sum(self._stage_time(ops)
                                       for ops in self.tbo_stages(s, moe, window, T_all))
            total += n * self._parts[key]
        return total + 2 * self._part(("ends", T, s.logits),
                                      lambda: [self.embed_op(T), *self.head_ops(s)])

    def _stage_time(self, ops) -> float:
        """A stage as the engine plays it: one block whose EP transfers hide behind its
        compute (sim.costs ``_hide``)."""
        return self._costs.op_time(Block(tuple(ops), overlap=("ep",)))
