"""What a batching policy sees and returns. A policy has one method, ``next_batch``:
given a replica's queues and KV cache, pick the work of its next iteration."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from workloads.inference.kv_cache import PagedKVCache
from workloads.inference.requests import Request

Kind = Literal["prefill", "decode", "pad"]


@dataclass(slots=True)
class Item:
    req: Request
    tokens: int          # new tokens this iteration (a prefill chunk, or 1 for decode)
    kind: Kind
    past: int = 0        # tokens already in the KV cache before this iteration


@dataclass
class Batch:
    items: list[Item] = field(default_factory=list)
    swap_bytes: float = 0.0          # KV bytes moved host<->device for swap preemption

    def add(self, req: Request, tokens: int, kind: Kind, past: int) -> None:
        self.items.append(Item(req, tokens, kind, past))


@dataclass
class Limits:
    max_batch: int
    max_tokens: int
    chunk_size: int
    preemption: str = "recompute"
    kv_bytes_per_token: float = 0.0   # per GPU, for swap traffic
    state_bytes_per_seq: float = 0.0  # per GPU, a hybrid model's Mamba state (swapped too)


@dataclass
class Replica:
    """A model replica's serving state; ``role`` is prefill/decode under disaggregation."""
    index: int
    kv: PagedKVCache
    role: Literal["both", "prefill", "decode"] = "both"
    waiting: deque[Request] = field(default_factory=deque)
    running: list[Request] = field(default_factory=list)
    busy: bool = False
    preemptions: int = 0
    incoming: int = 0               # KV transfers in flight to this (decode) replica
    cohort: list[Request] = field(default_factory=list)     # static batching's fixed batch

    @property
    def outstanding(self) -> int:
        return len(self.waiting) + len(self.running) + self.incoming


class Scheduler:
    name = "base"

    def __init__(self, limits: Limits):
        self.limits = limits

    def next_batch(self, rep: Replica) -> Batch | None:
        raise NotImplementedError

    # ---- shared steps -------------------------------------------------------------
    def decode_running(self, rep: Replica, batch: Batch) -> None:
        """One token for every running sequence past its prefill, preempting the newest
        sequences when the cache cannot grow (vLLM's policy: last in, first out)."""
        decodes = [r for r in rep.running if not r.in_prefill]
        i = 0
        while i < len(decodes):
            req = decodes[i]
            if rep.kv.grow(req, req.context + 1):
                i += 1
                continue
            self.preempt(rep, decodes.pop(), batch)   # retry req unless it was the victim
        for req in decodes:
            batch.add(req, 1, "decode", req.context)

    def preempt(self, rep: Replica, req: Request, batch: Batch) -> None:
        rep.running.remove(req)
        if self.limits.preemption == "swap":
            batch.swap_bytes += req.context * self.limits.kv_bytes_per_token + self.limits.state_bytes_per_seq
            req.kv_ready = True
        else:       # recompute: rebuild prompt + generated tokens by a new prefill
            req.target, req.prefilled, req.kv_ready = req.context, 0, False
        rep.kv.release(req)
        req.preemptions += 1
        rep.preemptions += 1
        rep.waiting.appendleft(req)

    def admit_ready(self, rep: Replica, req: Request, batch: Batch) -> bool:
        """Bring back a request whose KV arrives whole (swap-in or disaggregated transfer)."""
        if not rep.kv.grow(req, req.context):
            return False
        if req.preemptions and self.limits.preemption == "swap" and rep.role != "decode":
            batch.swap_bytes += req.context * self.limits.kv_bytes_per_token + self.limits.state_bytes_per_seq
        rep.waiting.popleft()
        rep.running.append(req)
        return True

    def admit_prefills(self, rep: Replica, batch: Batch, budget: int, chunked: bool,
                       reserve_output: bool = False) -> int:
        """FCFS prefill admission within a token budget; returns the tokens used."""
        used = 0
        while rep.waiting and len(rep.running) < self.limits.max_batch:
            req = rep.waiting[0]
            if req.kv_ready:
                if not self.admit_ready(rep, req, batch):
                    break
                continue
            left = req.target - req.prefilled
            n = min(left, budget - used) if chunked else left
            if n <= 0 or (not chunked and used + n > budget and used > 0):
                break
            need = req.prompt + req.output if reserve_output else req.prefilled + n
            if not rep.kv.grow(req, need):
                break
            rep.waiting.popleft()
            rep.running.append(req)
            batch.add(req, n, "prefill", req.prefilled)
            used += n
        return used

    def continue_prefills(self, rep: Replica, batch: Batch, budget: int) -> int:
        """Next chunks of prompts already admitted (chunked prefill)."""
        used = 0
        for req in rep.running:
            if not req.in_prefill or used >= budget:
                continue
            n = min(req.target - req.prefilled, budget - used)
            if not rep.kv.grow(req, req.prefilled + n):
                break
            batch.add(req, n, "prefill", req.prefilled)
            used += n
        return used
