"""vLLM (v0 scheduler, Kwon et al. SOSP'23): prefill-first. If waiting prompts fit
the token budget and the paged cache, the iteration prefills only them; otherwise it
decodes every running sequence, preempting the newest when blocks run out."""

from __future__ import annotations

from workloads.inference.schedulers.base import Batch, Replica, Scheduler


class VLLM(Scheduler):
    name = "vllm"

    def next_batch(self, rep: Replica) -> Batch | None:
        batch = Batch()
        if rep.waiting:
            self.admit_prefills(rep, batch, self.limits.max_tokens, chunked=False)
            if any(i.kind == "prefill" for i in batch.items):
                return batch
        self.decode_running(rep, batch)
        return batch if batch.items or batch.swap_bytes else None
