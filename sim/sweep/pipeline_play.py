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
per (schedule, ranks, chunks, microbatches) (``order_of``) and each plan's times come
from one loop over that flat order (``play_order``), the same times as ``play``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

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
    weight-gradient pass ends (the chunk's gradients are complete)."""
    end: list[float]
    grads_done: list[list[float]]


def play(pipe: Pipeline, units: list[list[Unit]],
         hop: Callable[[int, int], float]) -> Played:
    """List schedule of every rank's ``units`` under the pipeline's dependencies. A rank
    goes on until a unit's input is not produced yet, then waits for that pass; the
    order in which ranks go on changes nothing (each link has one receiver, which books
    it in its own order)."""
    p = pipe.p
    done: dict[tuple[int, int, int, bool], float] = {}  # (rank, mb, chunk, gradient?) -> end
    link: dict[tuple[int, int, bool], float] = {}       # (src, dst, gradient?) -> free at
    clock, nxt = [0.0] * p, [0] * p
    grads = [[0.0] * pipe.v for _ in range(p)]
    feed = _feeds(pipe, hop)
    waiting: dict[tuple, list[int]] = {}
    ready = list(range(p))
    while ready:
        r = ready.pop()
        seq, k, t, g = units[r], nxt[r], clock[r], grads[r]
        while k < len(seq):
            unit = seq[k]
            steps = unit[1]
            if len(steps) == 1:         # the common case, inline: one pass
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
                ends = _run(unit, t, arrive)
                t = ends[-1]
            _record(r, steps, ends, done, g, waiting, ready)
            k += 1
        nxt[r], clock[r] = k, t
    if any(n < len(u) for n, u in zip(nxt, units, strict=True)):
        raise ValueError("pipeline orders wait on each other (no rank can go on)")
    return Played(clock, grads)


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


def _run(unit: Unit, free: float, arrive: list[float]) -> list[float]:
    """When each step of ``unit`` ends, its rank free at ``free`` and the steps' inputs
    there at ``arrive``: a step's gather after its own input, the first step (and a
    block) after every input of the unit (a DualPipe pair starts when both its inputs
    are there, workloads/training.py ``_add_compute``)."""
    secs, steps = unit[0], unit[1]
    gathers = unit[2] if len(unit) > 2 else (0.0,) * len(steps)
    block = not isinstance(secs, tuple)
    t, ends = free, []
    for k in range(len(steps)):
        if gathers[k]:
            t = max(t, arrive[k]) + gathers[k]
        t = max(t, max(arrive) if k == 0 else arrive[k])
        if not block:
            t += secs[k]
            ends.append(t)
    return [t + secs] * len(steps) if block else ends


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


@dataclass(frozen=True)
class Order:
    """The plan-independent structure of a pipeline whose every unit is one pass (GPipe,
    1F1B, interleaved 1F1B), flattened in one order in which each unit comes after its
    rank's previous unit and after the pass that feeds it: ``entries`` (price index
    ``rank * 2v + 2 chunk + backward?``, slot of the feeding pass or -1, link or -1: the
    transfer's (src, dst, gradient?) in ``links``); ``last`` the slot of each rank's last
    unit, ``last_bwd`` of each (rank, chunk)'s last backward."""
    p: int
    v: int
    entries: tuple[tuple[int, int, int, int], ...]
    links: tuple[tuple[int, int, bool], ...]
    last: tuple[int, ...]
    last_bwd: tuple[tuple[int, ...], ...]


@lru_cache(maxsize=256)
def order_of(kind: str, p: int, v: int, m: int) -> Order:
    """``Order`` of a (schedule, ranks, chunks, microbatches): the orders of
    ``Pipeline.steps``, each rank's units taken as far as their inputs allow, rank after
    rank, until all are placed (the list schedule of ``play`` with its waits resolved
    once). A transfer's link is booked by its one receiver in the receiver's order, so
    any such order gives the same times."""
    pipe = Pipeline(kind, p, v, m, p * v)
    steps = [pipe.steps(r) for r in range(p)]
    slot: dict[tuple[int, int, int, bool], int] = {}
    links: dict[tuple[int, int, bool], int] = {}
    entries, nxt = [], [0] * p
    while any(n < len(s) for n, s in zip(nxt, steps, strict=True)):
        moved = False
        for r in range(p):
            while nxt[r] < len(steps[r]):
                mb, c, kind_ = steps[r][nxt[r]]
                grad = kind_ != "F"
                src, ln = pipe.neighbour(r, c, kind_), -1
                if src is not None:
                    key = (src[0], mb, src[1], grad)
                    if key not in slot:
                        break
                    if src[0] != r:
                        ln = links.setdefault((src[0], r, grad), len(links))
                    src = slot[key]
                slot[(r, mb, c, grad)] = len(entries)
                entries.append((r * 2 * v + 2 * c + grad, -1 if src is None else src, ln, r))
                nxt[r] += 1
                moved = True
        if not moved:
            raise ValueError("pipeline orders wait on each other (no rank can go on)")
    last = tuple(max(i for i, e in enumerate(entries) if e[3] == r) for r in range(p))
    last_bwd = tuple(tuple(max(slot[k] for k in slot if k[0] == r and k[2] == c and k[3])
                           for c in range(v)) for r in range(p))
    return Order(p, v, tuple(entries), tuple(sorted(links, key=links.get)), last, last_bwd)


def play_order(order: Order, secs: list[float], hops: list[float], gather: float) -> Played:
    """``play`` for an ``Order``: ``secs`` the seconds of each price index (rank, chunk,
    pass), ``hops`` of one transfer on each of ``order.links``, ``gather`` of the
    receiver's TP all-gather before each pass fed by another rank. Each unit starts at
    max(its rank free, its input there), an input being there one hop after both the
    pass that made it and the link's previous transfer."""
    end: list[float] = []
    clock = [0.0] * order.p
    link = [0.0] * len(order.links)
    for k, src, ln, r in order.entries:
        t = clock[r]
        if src >= 0:
            a = end[src]
            if ln >= 0:
                f = link[ln]
                if f > a:
                    a = f
                a += hops[ln]
                link[ln] = a
                if a > t:
                    t = a
                t += gather
            elif a > t:
                t = a
        t += secs[k]
        clock[r] = t
        end.append(t)
    return Played([end[i] for i in order.last],
                  [[end[i] for i in row] for row in order.last_bwd])
