"""Sarathi-Serve (Agrawal et al. OSDI'24): stall-free batching. Each iteration decodes
every running sequence first, then fills the rest of a ``chunk_size`` token budget with
prefill chunks, so a long prompt never stalls ongoing decodes for a whole prefill."""

from __future__ import annotations

from workloads.inference.schedulers.base import Batch, Replica, Scheduler


class Sarathi(Scheduler):
    name = "sarathi"

    def next_batch(self, rep: Replica) -> Batch | None:
        batch = Batch()
        self.decode_running(rep, batch)
        budget = max(0, self.limits.chunk_size - len(batch.items))
        used = self.continue_prefills(rep, batch, budget)
        self.admit_prefills(rep, batch, budget - used, chunked=True)
        return batch if batch.items or batch.swap_bytes else None
