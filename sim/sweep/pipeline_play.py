"""A pipeline's step orders played as a list schedule, for the sweep estimator: when
each rank finishes, with ranks of unequal speed.

Each rank runs its own order (``workloads.pipeline.Pipeline.steps``, a DualPipe pair of
a forward and a backward as one unit: one block, or two passes one after the other) one
unit after the other; a unit starts when the rank is free and every input it receives
from another rank has arrived (a pair waits for both; without sequence parallelism each
received pass first waits for the receiver's TP all-gather of its input): a forward's activation from the
previous stage, a backward's (or input-gradient pass's) gradient from the next one
(``Pipeline.neighbour``), each ``hop(src, dst)`` seconds after the pass that produced
it. Transfers between two ranks in one direction go one at a time, in order (the
graph's send and receive streams per peer and direction, workloads/training.py
``_p2p_stream``). A step whose input comes from the same rank (the turn of a V) or the
loss gradient only waits for the rank's own earlier pass, already done in its order.

This is the graph's dependency structure (workloads/training.py ``_add_compute``,
``_merge_pair``) with each unit at its closed-form price, so it is exact where those
prices are, and costs O(units) per plan: the equal-rank bubble formulas
(sim/sweep/estimate_schedules.py) overstate the idle time when one rank is slower
than the rest, whose slack absorbs part of its bubble.

Where every unit is one pass (GPipe, 1F1B, interleaved 1F1B) the waits are resolved once
per (schedule, ranks, chunks, microbatches) and each plan's times come from one loop over
that flat order, the same times as ``play`` (sim/sweep/order_play.py).

With NCCL's SMs priced (``sim.nccl_sms``), each rank's data-parallel stream is played
along (``DPStream``): its gradient buckets start as the passes that complete them end,
one after the other, and while one is in flight the rank's passes run at the engine's
rate (sim/engine.py: 1 - f N / S, f the pass's compute share, N the bucket kernel's SMs
of the GPU's S), so the buckets' starts and the passes' ends are the DES's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sim.costs import shared_rate
from workloads.pipeline import Pipeline
from workloads.schedules import Step

# (seconds, steps[, gathers]): ``seconds`` a number when the steps run as one block (an
# overlapped pair, workloads/stage_ops.py ``pair_block``; every step ends with it), or one
# number per step when they run one after the other; ``gathers``: per step, seconds of
# the receiver's TP all-gather of its input before it (workloads/pipeline_sync.py).
Unit = tuple


@dataclass
class Played:
    """Per rank: when its last unit ends, and, per chunk, when its last backward or
    weight-gradient pass ends (the chunk's gradients are complete); ``free``: when each
    rank's played data-parallel stream (``DPStream``) is done with its buckets, None
    where it was not played; ``copies``: when the last activation copy to the host ends
    (sim/sweep/order_play.py ``Offload``)."""
    end: list[float]
    grads_done: list[list[float]]
    free: list[float] | None = None
    copies: float = 0.0     # when the last activation copy to the host ends (offload)


class DPStream:
    """A rank's data-parallel stream, played beside its compute: ``items`` (key, seconds,
    SMs) in the stream's order, each launched when its key is ``mark``-ed and the one
    before it is done (its kernel holds its SMs from then to its end, the engine's
    ``_collective`` with one simulated member); ``run`` is a pass's end at the engine's
    shared rate (sim/engine.py ``_shared``) under the kernels launched so far."""

    __slots__ = ("items", "sms", "ready", "nxt", "free", "spans", "pos", "zero2", "zero2_sms")

    def __init__(self, items: list[tuple], gpu_sms: int):
        self.items, self.sms = items, gpu_sms
        # ZeRO-2: per chunk, per layer node of a backward, the seconds of the buckets it
        # completes, launched by order_play ``launch_layers``, and their kernel's SMs
        self.zero2: dict[int, list[tuple[float, ...]]] | None = None
        self.zero2_sms = 0
        self.ready: dict = {}
        self.nxt, self.free, self.pos = 0, 0.0, 0
        self.spans: list[tuple[float, float, int]] = []   # (start, end, SMs) in order

    def mark(self, key, t: float) -> None:
        """``key``'s gradients are complete at ``t``: launch the items now ready."""
        self.ready[key] = t
        items, ready = self.items, self.ready
        while self.nxt < len(items):
            key_, secs, k = items[self.nxt]
            at = ready.get(key_)
            if at is None:
                return
            start = at if at > self.free else self.free
            self.free = start + secs
            self.spans.append((start, self.free, k))
            self.nxt += 1

    def run(self, t: float, w: float, compute: float) -> float:
        """When a pass of ``w`` seconds (``compute`` of them in compute kernels) started at
        ``t`` ends: at 1 - f min(N, S - 1) / S of its speed while a kernel of N SMs is in
        flight (f = compute / w; ``shared_end``)."""
        if w <= 0 or compute <= 0:
            return t + w
        end, self.pos = shared_end(self.spans, self.pos, t, w, min(1.0, compute / w), self.sms)
        return end


def shared_end(spans: list[tuple[float, float, int]], pos: int, t: float, w: float, f: float,
               gpu_sms: int) -> tuple[float, int]:
    """(end, first span still open at ``t``) of ``w`` seconds of work of compute share
    ``f`` started at ``t``, at the engine's shared rate (sim/engine.py ``_shared``) under
    ``spans`` (start, end, SMs), in order, of the kernels beside it; ``pos`` the first span
    that may still be open."""
    n = len(spans)
    while pos < n and spans[pos][1] <= t:
        pos += 1
    i = pos
    while i < n:
        a, b, k = spans[i]
        if a > t:
            if t + w <= a:
                return t + w, pos
            w -= a - t
            t = a
        rate = shared_rate(f, k, gpu_sms)
        if t + w / rate <= b:
            return t + w / rate, pos
        w -= (b - t) * rate
        t = b
        i += 1
    return t + w, pos


def play(pipe: Pipeline, units: list[list[Unit]],
         hop: Callable[[int, int], float], streams: list[DPStream] | None = None) -> Played:
    """List schedule of every rank's ``units`` under the pipeline's dependencies. A rank
    goes on until a unit's input is not produced yet, then waits for that pass; the
    order in which ranks go on changes nothing (each link has one receiver, which books
    it in its own order). ``streams``: each rank's DP stream played along (its units
    then carry their compute seconds as a fourth element, shaped as their seconds), its
    keys ("C", chunk) marked as each chunk's last backward or weight-gradient pass
    ends, "end" after the rank's last unit."""
    p = pipe.p
    done: dict[tuple[int, int, int, bool], float] = {}  # (rank, mb, chunk, gradient?) -> end
    link: dict[tuple[int, int, bool], float] = {}       # (src, dst, gradient?) -> free at
    clock, nxt = [0.0] * p, [0] * p
    grads = [[0.0] * pipe.v for _ in range(p)]
    feed = _feeds(pipe, hop)
    last = None if streams is None else [_last_grads(seq) for seq in units]
    waiting: dict[tuple, list[int]] = {}
    ready = list(range(p))
    while ready:
        r = ready.pop()
        seq, k, t, g = units[r], nxt[r], clock[r], grads[r]
        st = None if streams is None else streams[r]
        while k < len(seq):
            unit = seq[k]
            steps = unit[1]
            if st is None and len(steps) == 1:  # the common case, inline: one pass
                mb, c, kind = steps[0]
                f = feed.get((r, c, kind))
                at = 0.0
                if f is not None:
                    key = (f[0], mb, f[1], f[2])
                    at = done.get(key)
                    if at is None:
                        waiting.setdefault(key, []).append(r)
                        break
                    if f[3] is not None:
                        key = (f[0], r, f[2])
                        at = link[key] = max(at, link.get(key, 0.0)) + f[3]
                secs = unit[0]
                t = max(t, at) + (unit[2][0] if len(unit) > 2 else 0.0) + \
                    (secs[0] if isinstance(secs, tuple) else secs)
                ends = (t,)
            else:
                arrive = _arrivals(feed, r, steps, done, link)
                if not isinstance(arrive, list):
                    waiting.setdefault(arrive, []).append(r)
                    break
                ends = _run(unit, t, arrive, st)
                t = ends[-1]
            _record(r, steps, ends, done, g, waiting, ready)
            if st is not None:
                for j, c in last[r].get(k, ()):
                    st.mark(("C", c), ends[j])
            k += 1
        nxt[r], clock[r] = k, t
    return _played(units, nxt, clock, grads, streams)


def _played(units: list[list[Unit]], nxt: list[int], clock: list[float],
            grads: list[list[float]], streams: list[DPStream] | None) -> Played:
    """``play``'s result once no rank can go on, each rank at unit ``nxt[r]`` (an error
    where one has units left) and free at ``clock[r]``; its DP stream's "end" marked then."""
    if any(n < len(u) for n, u in zip(nxt, units, strict=True)):
        raise ValueError("pipeline orders wait on each other (no rank can go on)")
    if streams is None:
        return Played(clock, grads)
    for st, t in zip(streams, clock, strict=True):
        st.mark("end", t)
    return Played(clock, grads, [st.free for st in streams])


def _last_grads(seq: list[Unit]) -> dict[int, list[tuple[int, int]]]:
    """unit index -> (step index, chunk) of each chunk's last backward or weight-gradient
    step in a rank's units (workloads/training.py ``_weights_ready``)."""
    where = {}
    for k, unit in enumerate(seq):
        for j, (_, c, kind) in enumerate(unit[1]):
            if kind in "BW":
                where[c] = (k, j)
    out: dict[int, list[tuple[int, int]]] = {}
    for c, (k, j) in where.items():
        out.setdefault(k, []).append((j, c))
    return out


def _record(r: int, steps, ends, done: dict, grads: list[float], waiting: dict,
            ready: list[int]) -> None:
    """A unit's steps ended at ``ends``: their outputs are produced (the ranks waiting
    for one go on) and their chunks' gradients complete so far."""
    for (mb, c, kind), end in zip(steps, ends, strict=True):
        if kind != "W":
            key = (r, mb, c, kind != "F")
            done[key] = end
            if key in waiting:
                ready += waiting.pop(key)
        if kind != "F":
            grads[c] = end


def _feeds(pipe: Pipeline, hop: Callable[[int, int], float]) -> dict:
    """(rank, chunk, pass) -> (rank and chunk feeding it, gradient?, seconds of the
    transfer: None at the turn of a V, on the rank itself); absent without an input."""
    out = {}
    for r in range(pipe.p):
        for c in range(pipe.v):
            for kind in "FBI":
                src = pipe.neighbour(r, c, kind)
                if src is not None:
                    out[(r, c, kind)] = (src[0], src[1], kind != "F",
                                         None if src[0] == r else hop(src[0], r))
    return out


def _run(unit: Unit, free: float, arrive: list[float],
         stream: DPStream | None = None) -> list[float]:
    """When each step of ``unit`` ends, its rank free at ``free`` and the steps' inputs
    there at ``arrive``: a step's gather after its own input, the first step (and a
    block) after every input of the unit (a DualPipe pair starts when both its inputs
    are there, workloads/training.py ``_add_compute``); with ``stream``, each pass (or
    the block) at its shared rate (``DPStream.run``, the unit's compute seconds
    ``unit[3]``)."""
    secs, steps = unit[0], unit[1]
    gathers = unit[2] if len(unit) > 2 else (0.0,) * len(steps)
    block = not isinstance(secs, tuple)
    t, ends = free, []
    for k in range(len(steps)):
        if gathers[k]:
            t = max(t, arrive[k]) + gathers[k]
        t = max(t, max(arrive) if k == 0 else arrive[k])
        if not block:
            t = t + secs[k] if stream is None else stream.run(t, secs[k], unit[3][k])
            ends.append(t)
    if block:
        t = t + secs if stream is None else stream.run(t, secs, unit[3])
        return [t] * len(steps)
    return ends


def _arrivals(feed: dict, r: int, steps: tuple[Step, ...], done: dict,
              link: dict) -> list[float] | tuple:
    """When each step's input is on rank ``r`` (0 without one; the transfers booked on
    their links), or the key of the first input not produced yet."""
    made = []
    for mb, c, kind in steps:
        f = feed.get((r, c, kind))
        if f is None:
            made.append(None)
            continue
        key = (f[0], mb, f[1], f[2])
        t = done.get(key)
        if t is None:
            return key
        made.append((f, t))
    out = []
    for m in made:
        if m is None:
            out.append(0.0)
            continue
        f, t = m
        if f[3] is not None:            # else the turn of a V: the rank's own earlier pass
            key = (f[0], r, f[2])
            t = link[key] = max(t, link.get(key, 0.0)) + f[3]
        out.append(t)
    return out
