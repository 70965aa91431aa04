"""The time of one serving iteration of a MoE / MLA / windowed model: the operations of
workloads/inference/moe_ops.py priced per kind of layer and cached by batch shape, like
sim/serving/iteration.py does for dense models."""

from __future__ import annotations

from sim.costs import exposed_comm
from sim.serving.iteration import IterationModel
from workloads.inference.moe_ops import MoEIterationOps, micro_batch, per_gpu
from workloads.inference.ops import Shape


class MoEIterationModel(MoEIterationOps, IterationModel):
    """``ep`` > 1: a replica of ep x tp x pp GPUs with attention data-parallel over ep."""

    def __init__(self, model, tp: int, pp: int, precision: str, compute, network,
                 kv_bytes: int | None = None, **moe):
        IterationModel.__init__(self, model, tp, pp, precision, compute, network, kv_bytes)
        self.configure(**moe)

    def _compose(self, s: Shape) -> float:
        """Per kind of layer: its token-count kernels (cached) and its attention; EP
        communication summed apart so that two-batch overlap can hide it under the
        iteration's compute, as the engine does for the block. Under two-batch overlap
        every kernel runs once per half batch (``micro_batches``)."""
        self.evaluations += 1
        mbs = self.micro_batches
        s = micro_batch(s, mbs)
        T_all = s.prefill_tokens + s.decode_seqs
        dec = s.prefill_tokens == 0
        s = per_gpu(s, self.ep)
        T = s.prefill_tokens + s.decode_seqs
        total = comm = held = 0.0
        for (moe, window), n in self.kinds().items():
            per = self._part(("layer", moe, T, T_all, dec),
                             lambda moe=moe: self.token_ops(T, moe, T_all, True, dec))
            per += sum(self._costs.op_time(o) for o in self.attention_ops_of(s, window))
            total += n * per
            key = (moe, T, T_all, dec)
            if ("ep", *key) not in self._parts:
                ops = self.token_ops(T, moe, T_all, False, dec)
                times = [self._costs.op_time(o) for o in ops]
                self._parts["ep", *key] = sum(times)
                self._parts["held", *key] = sum(t * getattr(o, "sms", 0)
                                                for o, t in zip(ops, times, strict=True))
            comm += n * self._parts["ep", *key]
            held += n * self._parts["held", *key]     # seconds x SMs the transfers hold
        total += self._part(("ends", T, s.logits), lambda: [self.embed_op(T), *self.head_ops(s)])
        if self.overlap and self.pp == 1:     # two-batch overlap: EP comm under compute
            sms = self._costs.compute.gpu.sms or 0
            comm = exposed_comm(comm, total, held / sms if sms else 0.0)
        hop = self.network.p2p_time(0, self.tp, 2.0 * T * self.model.hidden) if self.pp > 1 else 0.0
        return mbs * (total + comm) + (self.pp - 1) * hop
