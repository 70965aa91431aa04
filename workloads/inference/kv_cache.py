"""Paged KV cache (vLLM's PagedAttention, Kwon et al. SOSP'23): fixed-size blocks of
``block_size`` tokens allocated as a sequence grows, freed when it finishes or is
preempted. Counts only; which physical block holds what does not affect timing.

``seq_blocks``: blocks every sequence holds whatever its length, for a fixed-size state
beside its KV (a hybrid model's Mamba conv and SSM state, workloads/inference/hybrid_ops.py):
vLLM's hybrid KV cache manager allocates it from the same page pool as the attention
layers' blocks."""

from __future__ import annotations

from workloads.inference.requests import Request


class PagedKVCache:
    def __init__(self, blocks: int, block_size: int, seq_blocks: int = 0):
        self.capacity, self.block_size, self.seq_blocks = blocks, block_size, seq_blocks
        self.used = 0
        self.peak = 0

    def blocks_for(self, tokens: int) -> int:
        """Blocks of a sequence holding ``tokens`` tokens (its fixed state included)."""
        return -(-tokens // self.block_size) + (self.seq_blocks if tokens > 0 else 0)

    @property
    def free(self) -> int:
        return self.capacity - self.used

    def grow(self, req: Request, tokens: int) -> bool:
        """Make ``req`` hold ``tokens`` tokens; False (nothing changed) if blocks run out."""
        extra = self.blocks_for(tokens) - req.blocks
        if extra <= 0:
            return True
        if extra > self.free:
            return False
        self.used += extra
        req.blocks += extra
        self.peak = max(self.peak, self.used)
        return True

    def release(self, req: Request) -> None:
        self.used -= req.blocks
        req.blocks = 0
