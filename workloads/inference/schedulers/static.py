"""Static batching (request-level, as FasterTransformer): take up to ``max_batch``
requests, prefill them together, decode until the longest finishes. Finished
sequences stay in the batch as padding; nobody joins until the batch drains."""

from __future__ import annotations

from workloads.inference.schedulers.base import Batch, Replica, Scheduler


class Static(Scheduler):
    name = "static"

    def next_batch(self, rep: Replica) -> Batch | None:
        batch = Batch()
        if not rep.cohort:
            if not rep.waiting:
                return None
            self.admit_prefills(rep, batch, self.limits.max_tokens, chunked=False,
                                reserve_output=True)
            rep.cohort = list(rep.running)
            return batch if batch.items else None
        for req in rep.cohort:
            if req in rep.running:
                batch.add(req, 1, "decode", req.context)
            else:
                batch.add(req, 1, "pad", req.context)
        if not rep.running:
            rep.cohort = []
            return self.next_batch(rep)
        return batch
