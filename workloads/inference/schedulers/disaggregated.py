"""Prefill/decode disaggregation (DistServe, Zhong et al. OSDI'24; Splitwise): prefill
replicas only run prompts (prefill-first, whole prompts); after the first token the
KV cache moves over the fabric to a decode replica, which only decodes. The transfer
is the serving loop's business; here each role picks its batch."""

from __future__ import annotations

from workloads.inference.schedulers.base import Batch, Replica, Scheduler


class Disaggregated(Scheduler):
    name = "disaggregated"

    def next_batch(self, rep: Replica) -> Batch | None:
        batch = Batch()
        if rep.role == "prefill":
            self.admit_prefills(rep, batch, self.limits.max_tokens, chunked=False)
            return batch if batch.items else None
        while rep.waiting and len(rep.running) < self.limits.max_batch:
            if not self.admit_ready(rep, rep.waiting[0], batch):
                break
        self.decode_running(rep, batch)
        return batch if batch.items or batch.swap_bytes else None
