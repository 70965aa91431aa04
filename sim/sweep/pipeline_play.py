"""A pipeline's step orders played as a list schedule, for the sweep estimator: when
each rank finishes, with ranks of unequal speed.

Each rank runs its own order (``workloads.pipeline.Pipeline.steps``, overlapped pairs as
one unit) one unit after the other; a unit starts when the rank is free and every
input it receives from another rank has arrived: a forward's activation from the
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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from workloads.pipeline import Pipeline
from workloads.schedules import Step

Unit = tuple[float, tuple[Step, ...]]        # (seconds, the steps it runs, in order)


@dataclass
class Played:
    """Per rank: when its last unit ends, and, per chunk, when its last backward or
    weight-gradient pass ends (the chunk's gradients are complete)."""
    end: list[float]
    grads_done: list[list[float]]


def play(pipe: Pipeline, units: list[list[Unit]],
         hop: Callable[[int, int], float]) -> Played:
    """List schedule of every rank's ``units`` under the pipeline's dependencies."""
    p = pipe.p
    done: dict[tuple[int, int, int, bool], float] = {}  # (rank, mb, chunk, gradient?) -> end
    link: dict[tuple[int, int, bool], float] = {}       # (src, dst, gradient?) -> free at
    clock, nxt = [0.0] * p, [0] * p
    grads = [[0.0] * pipe.v for _ in range(p)]
    source = {(r, c, kind): pipe.neighbour(r, c, kind)     # (rank, chunk) feeding a pass
              for r in range(p) for c in range(pipe.v) for kind in "FBI"}
    left = sum(len(u) for u in units)
    while left:
        moved = False
        for r in range(p):
            seq = units[r]
            while nxt[r] < len(seq):
                start = _start(source, r, seq[nxt[r]][1], clock[r], done, link, hop)
                if start is None:
                    break
                secs, steps = seq[nxt[r]]
                end = clock[r] = start + secs
                for mb, c, kind in steps:
                    if kind != "W":
                        done[(r, mb, c, kind != "F")] = end
                    if kind != "F":
                        grads[r][c] = end
                nxt[r] += 1
                left -= 1
                moved = True
        if not moved:
            raise ValueError("pipeline orders wait on each other (no rank can go on)")
    return Played(clock, grads)


def _start(source: dict, r: int, steps: tuple[Step, ...], free: float, done: dict,
           link: dict, hop: Callable[[int, int], float]) -> float | None:
    """When a unit of rank ``r`` can start (its inputs' transfers booked on their links),
    or None while one of its inputs is not produced yet."""
    inputs = []
    for mb, c, kind in steps:
        src = source.get((r, c, kind))
        if src is None:
            continue
        made = done.get((src[0], mb, src[1], kind != "F"))
        if made is None:
            return None
        inputs.append((src[0], kind != "F", made))
    start = free
    for src, grad, made in inputs:
        if src == r:                    # the turn of a V: the rank's own earlier pass
            start = max(start, made)
            continue
        key = (src, r, grad)
        arrive = link[key] = max(made, link.get(key, 0.0)) + hop(src, r)
        start = max(start, arrive)
    return start
