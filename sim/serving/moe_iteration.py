"""The time of one serving iteration of a MoE / MLA / windowed model: the operations of
workloads/inference/moe_ops.py priced per kind of layer and cached by batch shape, like
sim/serving/iteration.py does for dense models."""

from __future__ import annotations

from sim.serving.iteration import IterationModel
from workloads.inference.moe_ops import MoEIterationOps, per_gpu
from workloads.inference.ops import Shape
from workloads.moe_layers import DEEPEP_SMS


class MoEIterationModel(MoEIterationOps, IterationModel):
    """``ep`` > 1: a replica of ep x tp x pp GPUs with attention data-parallel over ep."""

    def __init__(self, model, tp: int, pp: int, precision: str, compute, network,
                 kv_bytes: int | None = None, **moe):
        IterationModel.__init__(self, model, tp, pp, precision, compute, network, kv_bytes)
        self.configure(**moe)

    def _compose(self, s: Shape) -> float:
        """Per kind of layer: its token-count kernels (cached) and its attention; EP
        communication summed apart so that two-batch overlap can hide it under the
        iteration's compute, as the engine does for the block."""
        self.evaluations += 1
        T_all = s.prefill_tokens + s.decode_seqs
        dec = s.prefill_tokens == 0
        s = per_gpu(s, self.ep)
        T = s.prefill_tokens + s.decode_seqs
        total = comm = 0.0
        for (moe, window), n in self.kinds().items():
            per = self._part(("layer", moe, T, T_all, dec),
                             lambda moe=moe: self.token_ops(T, moe, T_all, True, dec))
            per += sum(self._costs.op_time(o) for o in self.attention_ops_of(s, window))
            total += n * per
            comm += n * self._part(("ep", moe, T, T_all, dec),
                                   lambda moe=moe: self.token_ops(T, moe, T_all, False, dec))
        total += self._part(("ends", T, s.logits), lambda: [self.embed_op(T), *self.head_ops(s)])
        if self.overlap and self.pp == 1:     # two-batch overlap: EP comm under compute
            comm = self._exposed(comm, total, dec)
        hop = self.network.p2p_time(0, self.tp, 2.0 * T * self.model.hidden) if self.pp > 1 else 0.0
        return total + comm + (self.pp - 1) * hop

    def _exposed(self, comm: float, compute: float, decode_only: bool) -> float:
        """EP communication left over by two-batch overlap. DeepEP's normal kernels hold
        DEEPEP_SMS of the GPU's SMs while they run, so the compute beside them runs on the
        rest: the iteration takes max(compute + comm x k / SMs, comm). Its low-latency
        kernels hold none while their data is in flight."""
        sms = self._costs.compute.gpu.sms or 0
        k = DEEPEP_SMS if self.moe_ctx.dispatcher == "deepep" and sms > DEEPEP_SMS \
            and not self.low_latency(decode_only) else 0
        lost = comm * k / sms if k else 0.0
        return max(lost, comm - compute)
