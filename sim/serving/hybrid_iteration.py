"""The time of one serving iteration of a hybrid Mamba model: the operations of
workloads/inference/hybrid_ops.py priced per kind of sub-layer and cached by batch shape,
like sim/serving/moe_iteration.py does for MoE models."""

from __future__ import annotations

from sim.serving.moe_iteration import MoEIterationModel
from workloads.inference.hybrid_ops import HybridIterationOps
from workloads.inference.ops import Shape


class HybridIterationModel(HybridIterationOps, MoEIterationModel):
    """A replica of tp x pp GPUs (no expert parallelism) serving a hybrid model."""

    def __init__(self, model, tp: int, pp: int, precision: str, compute, network,
                 kv_bytes: int | None = None, **moe):
        MoEIterationModel.__init__(self, model, tp, pp, precision, compute, network, kv_bytes,
                                   **moe)
        self.setup_hybrid()

    def _compose(self, s: Shape) -> float:
        """Per kind of sub-layer: its kernels that depend on the token count only (cached by
        T) plus those that depend on the batch's prefill / decode split (the Mamba
        conv, scan and state update, the attention core; cached by that split)."""
        self.evaluations += 1
        T = s.prefill_tokens + s.decode_seqs
        dec = s.prefill_tokens == 0
        total = 0.0
        for kind, n in self.kinds().items():
            core, built = self.core_names(kind), []

            def ops(kind=kind, built=built):
                if not built:
                    built.extend(self.sublayer_ops(s, kind, dec))
                return built
            per = self._part(("hybrid", kind, T, dec),
                             lambda core=core, ops=ops: [o for o in ops() if o.name not in core])
            if core:
                per += self._part(("hybrid_core", kind, s),
                                  lambda core=core, ops=ops: [o for o in ops() if o.name in core])
            total += n * per
        total += self._part(("ends", T, s.logits), lambda: [self.embed_op(T), *self.head_ops(s)])
        hop = self.network.p2p_time(0, self.tp, 2.0 * T * self.model.hidden) if self.pp > 1 else 0.0
        return total + (self.pp - 1) * hop
