"""Closed-form pipeline time of the split-backward schedules (docs/schedules.md), for
``sim/sweep/estimate.py``: the busiest rank's compute plus the published bubble.

Per rank, ``fwd``, ``bwd`` and ``wgrad`` are one microbatch's forward, full backward and
weight-gradient time over all the rank's layers (both chunks of a V or of DualPipe).

* zb-h1 (DualPipe README's ZB1P row): 1F1B's bubble with each stage's F + B - 2W in
  place of F + B;
* zb-v (Qi et al. section 4): the fill of the V, p - 1 chunk forwards (a chunk is half a
  rank's layers), the only idle time of the handcrafted order when F = B = W;
* dualpipe: (p/2 - 1)(F&B + B - 3W) per chunk (half a rank's layers); each microbatch
  visits one of a rank's two chunks, and both end ranks hold an embedding and a head;
* dualpipev: (p - 1)(F&B + B - 3W) per chunk (PP = 2p stages), embedding and head on
  rank 0.
F&B = F + B: the pair runs on one compute stream.

These assume equal ranks. MoE models under DualPipe(V) (``dual_play``) play each rank's
order instead, pass by pass with F&B the graph's pair block, whose EP all-to-alls hide
behind both chunks' compute (sim/sweep/estimate_moe.py ``pair_time``), under the
pipeline's dependencies (sim/sweep/pipeline_play.py): the ranks are unequal there (rank 0
of the V holds the embedding and the output layer), and the others absorb part of the
busiest rank's bubble, which the formula above overstates (by up to 8% on Qwen3-30B-A3B,
DualPipeV PP 4, 16 microbatches).
"""

from __future__ import annotations

from sim.sweep import pipeline_play
from workloads import schedules_zb
from workloads.parallel import ParallelPlan


def place_heads(plan: ParallelPlan, fwd: list[float], bwd: list[float], lt) -> None:
    """Move or copy the output layer's time, which the straight pipeline puts on the last
    rank: the V shapes hold it on rank 0, DualPipe on both end ranks (and the
    embedding too)."""
    kind, last = plan.effective_schedule, plan.pp - 1
    if plan.pp == 1 or kind not in ("zb-v", "dualpipev", "dualpipe"):
        return
    fwd[0] += lt.head_fwd
    bwd[0] += lt.head_bwd
    if kind == "dualpipe":
        fwd[last] += lt.emb_fwd
        bwd[last] += lt.emb_bwd
    else:
        fwd[last] -= lt.head_fwd
        bwd[last] -= lt.head_bwd


def pipe_time(plan: ParallelPlan, fwd: list[float], bwd: list[float],
              wgrad: list[float]) -> float:
    """Compute of the busiest rank plus the schedule's bubble, in seconds."""
    p, m, kind = plan.pp, plan.microbatches, plan.effective_schedule
    share = 0.5 if kind == "dualpipe" else 1.0      # microbatches each chunk sees
    per = [f + b for f, b in zip(fwd, bwd, strict=True)]
    r = max(range(p), key=lambda i: per[i])
    busy = m * share * per[r]
    f, b, w = fwd[r] / 2, bwd[r] / 2, wgrad[r] / 2   # one chunk of the V / of DualPipe
    if kind == "zb-h1":
        bubble = sum(per[i] - 2 * wgrad[i] for i in range(p) if i != r)
    elif kind == "zb-v":
        bubble = (p - 1) * f
    elif kind == "dualpipe":
        bubble = (p // 2 - 1) * ((f + b) + b - 3 * w)
    else:
        bubble = (p - 1) * ((f + b) + b - 3 * w)
    return busy + max(bubble, 0.0)


def rank_units(plan: ParallelPlan, r: int, dual) -> list:
    """Rank ``r``'s DualPipe(V) order (workloads/schedules_zb.py) as priced units
    ``(seconds, steps)``: each overlapped pair at its pair price, every other pass (the
    fill's forwards, the drain's backwards, the split I and W) alone. ``dual``: the
    rank's sim.sweep.estimate_moe.DualTimes."""
    steps, pairs = schedules_zb.dualpipe(plan.microbatches, plan.pp, r,
                                         plan.effective_schedule == "dualpipev")
    alone = {"F": dual.fwd, "B": dual.bwd, "I": dual.inp, "W": dual.wgt}
    starts, units, k = set(pairs), [], 0
    while k < len(steps):
        if k in starts:
            units.append((dual.pair[(steps[k][1], steps[k + 1][1])], (steps[k], steps[k + 1])))
            k += 2
            continue
        units.append((alone[steps[k][2]][steps[k][1]], (steps[k],)))
        k += 1
    return units


def rank_busy(plan: ParallelPlan, r: int, dual) -> float:
    """Seconds of compute of rank ``r`` over the DualPipe(V) order it plays."""
    return sum(secs for secs, _ in rank_units(plan, r, dual))


def dual_play(plan: ParallelPlan, pipe, dual: list, hop) -> pipeline_play.Played:
    """DualPipe(V) of MoE chunks, each rank's priced order played under the pipeline's
    dependencies (sim/sweep/pipeline_play.py): when each rank's compute ends, p2p
    transfers of ``hop(src, dst)`` seconds included."""
    units = [rank_units(plan, r, dual[r]) for r in range(plan.pp)]
    return pipeline_play.play(pipe, units, hop)
