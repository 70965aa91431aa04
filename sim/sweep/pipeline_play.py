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
                unit = seq[nxt[r]]
                steps = unit[1]
                arrive = _arrivals(source, r, steps, done, link, hop)
                if arrive is None:
                    break
                ends = _run(unit, clock[r], arrive)
                clock[r] = ends[-1]
                for (mb, c, kind), end in zip(steps, ends, strict=True):
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


def _arrivals(source: dict, r: int, steps: tuple[Step, ...], done: dict, link: dict,
              hop: Callable[[int, int], float]) -> list[float] | None:
    """When each step's input is on rank ``r`` (0 without one; the transfers booked on
    their links), or None while one of them is not produced yet."""
    made = []
    for mb, c, kind in steps:
        src = source.get((r, c, kind))
        t = None if src is None else done.get((src[0], mb, src[1], kind != "F"))
        if src is not None and t is None:
            return None
        made.append((src, kind != "F", t))
    out = []
    for src, grad, t in made:
        if src is None:
            out.append(0.0)
        elif src[0] == r:               # the turn of a V: the rank's own earlier pass
            out.append(t)
        else:
            key = (src[0], r, grad)
            t = link[key] = max(t, link.get(key, 0.0)) + hop(src[0], r)
            out.append(t)
    return out
