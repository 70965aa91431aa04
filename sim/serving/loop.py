"""The serving loop: a discrete-event simulation of replicas iterating over batches.

Events are request arrivals, KV transfers landing on decode replicas, and iteration
ends. A replica that is idle when work arrives starts an iteration at once; each
iteration's duration comes from the IterationModel (the iteration's ExecutionGraph
played on the engine, cached by batch shape). The loop is plain heap-ordered Python,
not SimPy processes, because it runs ~10^5-10^6 iterations for 10^4 requests.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from sim.progress import Quiet, progress
from sim.serving.fast_forward import decode_run
from sim.serving.iteration import IterationModel
from workloads.inference.ops import Shape
from workloads.inference.requests import Request
from workloads.inference.schedulers import Batch, Replica, Scheduler

ARRIVAL, TRANSFER, DONE = 0, 1, 2


@dataclass
class ServingLog:
    iterations: list[tuple] = field(default_factory=list)   # (replica, start, end, prefill, decode)
    kv_peak_blocks: int = 0
    preemptions: int = 0


class Router:
    def __init__(self, policy: str, replicas: list[Replica]):
        self.policy, self.replicas = policy, replicas
        self._rr = itertools.cycle(range(len(replicas)))

    def pick(self) -> Replica:
        if self.policy == "least_outstanding":
            return min(self.replicas, key=lambda r: (r.outstanding, r.index))
        return self.replicas[next(self._rr)]


# Requests from which a run may take seconds (~1k simulated requests per second): a bar.
PROGRESS_FROM = 2_000


class ServingLoop:
    def __init__(self, replicas: list[Replica], scheduler: Scheduler, model: IterationModel,
                 router: str, transfer_time=None, host_bw: float = 25e9,
                 host_per_seq: float = 0.0):
        self.replicas, self.scheduler, self.model = replicas, scheduler, model
        front = [r for r in replicas if r.role != "decode"]
        self.router = Router(router, front)
        self.decode_router = Router("least_outstanding", [r for r in replicas if r.role == "decode"])
        self.transfer_time = transfer_time     # (prefill replica, decode replica, bytes) -> s
        self.host_bw = host_bw
        # Host work between iterations per sequence in the batch (engine_host): the GPU
        # waits for it when the engine schedules synchronously (hw_models/data/engines.yaml).
        self.host_per_seq = host_per_seq
        self.log = ServingLog()
        self._heap: list = []
        self._seq = itertools.count()
        self._bar = Quiet()
        # Runs of decode-only iterations are played in one go where that is exact
        # (sim/serving/fast_forward.py); False plays every iteration through the scheduler.
        self.fast_forward = scheduler.name == "vllm" and all(r.role == "both" for r in replicas)
        self._arrivals = 0

    def push(self, t: float, kind: int, obj) -> None:
        heapq.heappush(self._heap, (t, kind, next(self._seq), obj))

    def run(self, requests: list[Request]) -> ServingLog:
        for req in requests:
            self.push(req.arrival, ARRIVAL, req)
        self._arrivals = len(requests)
        with progress(total=len(requests), desc="serving", unit="request",
                      quiet=len(requests) < PROGRESS_FROM) as self._bar:
            self._play()
        self.log.kv_peak_blocks = max(r.kv.peak for r in self.replicas)
        self.log.preemptions = sum(r.preemptions for r in self.replicas)
        return self.log

    def _play(self) -> None:
        ready: dict[int, Replica] = {}     # replicas to kick once time moves on
        while self._heap:
            t, kind, _, obj = heapq.heappop(self._heap)
            rep = self.handle(t, kind, obj)
            ready.setdefault(rep.index, rep)
            # Every event at this instant (a burst of arrivals, iterations ending together)
            # is applied before any replica picks its next batch, so a scheduler sees every
            # request that has arrived by the iteration's start.
            if not self._heap or self._heap[0][0] > t:
                for r in ready.values():
                    self.kick(r, t)
                ready.clear()

    def handle(self, t: float, kind: int, obj) -> Replica:
        """Apply one event to the queues; returns the replica it concerns."""
        if kind == ARRIVAL:
            self._arrivals -= 1
            rep = self.router.pick()
            obj.replica = rep.index
            rep.waiting.append(obj)
        elif kind == TRANSFER:
            req, rep = obj
            rep.incoming -= 1
            rep.waiting.append(req)
        else:
            rep, batch = obj
            if batch is not None:        # None: the end of a fast-forwarded decode run
                self.finish(rep, batch, t)
            rep.busy = False
        return rep

    def kick(self, rep: Replica, t: float) -> None:
        if rep.busy:
            return
        if self.fast_forward and not self._arrivals:
            end = decode_run(self, rep, t)
            if end is not None:
                rep.busy = True
                self.push(end, DONE, (rep, None))
                return
        batch = self.scheduler.next_batch(rep)
        if batch is None:
            return
        dur = (self.model_of(rep).time(shape_of(batch)) + batch.swap_bytes / self.host_bw
               + self.host_time(rep, batch))
        rep.busy = True
        n_pre = sum(i.tokens for i in batch.items if i.kind == "prefill")
        self.log.iterations.append((rep.index, t, t + dur, n_pre, len(batch.items)))
        self.push(t + dur, DONE, (rep, batch))

    def model_of(self, rep: Replica) -> IterationModel:
        """The iteration model of replica ``rep`` (one for every replica here)."""
        return self.model

    def host_per_seq_of(self, rep: Replica) -> float:
        """Engine host seconds per sequence per iteration on replica ``rep``."""
        return self.host_per_seq

    def host_time(self, rep: Replica, batch: Batch) -> float:
        """The engine's host work for this batch: per sequence scheduled (padding excluded)."""
        per_seq = self.host_per_seq_of(rep)
        if not per_seq:
            return 0.0
        return per_seq * sum(1 for i in batch.items if i.kind != "pad")

    def finish(self, rep: Replica, batch: Batch, t: float) -> None:
        for item in batch.items:
            req = item.req
            if item.kind == "pad":
                continue
            if item.kind == "prefill":
                req.prefilled += item.tokens
                if req.prefilled < req.target:
                    continue
                req.kv_ready = False
            self.emit(rep, req, t)

    def emit(self, rep: Replica, req: Request, t: float) -> None:
        if req.generated == 0:
            req.first_token = t
        else:
            gap = t - req.last_token
            req.tbt.append(gap)
        req.last_token = t
        req.generated += 1
        if req.generated >= req.output:
            req.finish = t
            self._bar.update()
            rep.running.remove(req)
            rep.kv.release(req)
        elif rep.role == "prefill":
            self.hand_over(rep, req, t)

    def hand_over(self, rep: Replica, req: Request, t: float) -> None:
        """Disaggregation: ship the KV cache to a decode replica; the prefill replica's
        blocks are freed once the transfer is issued (DistServe pulls, then frees)."""
        dst = self.decode_router.pick()
        nbytes = req.context * self.model.kv_bytes_per_token() + self.model.state_bytes_per_seq()
        dt = self.transfer_time(rep.index, dst.index, nbytes)
        rep.running.remove(req)
        rep.kv.release(req)
        req.kv_ready, req.decode_replica = True, dst.index
        dst.incoming += 1
        self.push(t + dt, TRANSFER, (req, dst))


def shape_of(batch: Batch) -> Shape:
    pt = pairs = kv = ds = dkv = logits = ps = 0
    for i in batch.items:
        if i.kind == "prefill":
            ps += 1
            pt += i.tokens
            pairs += i.tokens * i.past + i.tokens * (i.tokens + 1) // 2
            kv = max(kv, i.past + i.tokens)
            if i.past + i.tokens >= i.req.target:
                logits += 1
        else:
            ds += 1
            dkv += i.past
            logits += 1
    return Shape(pt, pairs, kv, ds, dkv, logits, ps)
