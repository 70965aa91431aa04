"""Orca (Yu et al. OSDI'22): iteration-level scheduling with selective batching; new
requests join any iteration with their whole prompt next to running decodes. KV is
reserved for the full request up front (prompt + output), so nothing is preempted."""

from __future__ import annotations

from workloads.inference.schedulers.base import Batch, Replica, Scheduler


class Orca(Scheduler):
    name = "orca"

    def next_batch(self, rep: Replica) -> Batch | None:
        batch = Batch()
        for req in rep.running:
            batch.add(req, 1, "decode", req.context)
        self.admit_prefills(rep, batch, self.limits.max_tokens - len(batch.items),
                            chunked=False, reserve_output=True)
        return batch if batch.items else None
