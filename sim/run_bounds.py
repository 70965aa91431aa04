"""How much work one whole-run simulation is, before playing it, so that none can hang.

A run is played one checkpoint segment at a time (sim/reliability.py), so its cost is the
number of segments plus the number of interruptions. With exponential failures of rate
lambda, recovery R and a segment of s = k T + C seconds, the expected number of failures
per committed segment is e^(lambda R) (e^(lambda s) - 1) (Daly 2006, the same model the
goodput formula comes from). When the mean time between failures is short against the
restart or against one step, that number explodes: the run never finishes. We compute it
in log space first and refuse such runs with one line, instead of looping forever.
"""

from __future__ import annotations

import math

from hw_models.errors import ClusterSimError

# Events (segments + interruptions) one simulated run may take. A run plays ~1e5-1e6
# events per second, and the checkpoint-interval search plays ~60 runs, so 2e5 keeps a
# `clustersim run` within about a minute in the worst accepted case.
MAX_EVENTS = 200_000
# Events the whole checkpoint-interval search may play (all candidates, all samples): the
# candidates that cost least are kept up to this, so a search stays within ~10 s.
SEARCH_EVENTS = 1_500_000


def _log_failures_per_segment(rate: float, recovery_s: float, segment_s: float) -> float:
    """log of e^(rate R) (e^(rate s) - 1); -inf without failures."""
    if rate <= 0:
        return -math.inf
    x = rate * segment_s
    if x > 700:                                   # expm1 overflows; log(e^x - 1) ~ x
        return rate * recovery_s + x
    return rate * recovery_s + math.log(math.expm1(x)) if x > 0 else -math.inf


def interruption_rate(m) -> float:
    """Interruptions per second: failures, plus drains of slow nodes that restart the job."""
    drains = m.slow_nodes.rate if m.slow_nodes and m.slow_nodes.drain_restart \
        and m.slow_nodes.detect_s is not None else 0.0
    return m.rate + drains


def expected_events(m, every_steps: int | None = None) -> float:
    """Expected segments + interruptions of one run of RunModel ``m`` (inf when it never ends)."""
    k = max(1, min(every_steps or m.every_steps, m.total_steps))
    segments = math.ceil(m.total_steps / k)
    seg_s = k * (m.step_s + m.stall_s) * max(1.0, m.slowdown if m.straggler_p else 1.0) \
        + m.ckpt_block_s + m.write_slow_s * m.write_steps
    log_f = _log_failures_per_segment(interruption_rate(m), m.restart_s + m.load_s, seg_s)
    log_total = math.log(segments) + math.log1p(math.exp(min(log_f, 700)))
    return math.inf if log_f >= 700 or log_total > 700 else math.exp(log_total)


# Restarts one failure may take: a recovery of R seconds completes with probability
# e^(-lambda R), so it takes e^(lambda R) attempts on average, with a geometric tail. Beyond
# this the job practically never gets back to work, whatever the checkpoint interval.
MAX_RESTARTS = 10_000


def recovers(m) -> bool:
    rate = interruption_rate(m)
    return rate * (m.restart_s + m.load_s) <= math.log(MAX_RESTARTS)


def feasible(m, every_steps: int | None = None) -> bool:
    return recovers(m) and expected_events(m, every_steps) <= MAX_EVENTS


class EventBudget:
    """Events one whole-run question (the interval search and the final runs) may play; a
    safety net for the tail of the event count, which the expectation above does not bound."""

    def __init__(self, limit: int):
        self.limit = self.left = limit

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise ClusterSimError(
                f"run did not finish within {self.limit:,} simulated segments and interruptions "
                "(all Monte-Carlo samples together); failures are too frequent against the "
                "restart and step times, or the samples too many (lower run.failures, "
                "restart_s or run.samples)")


def within_budget(m, intervals: list[int], samples: int) -> list[int]:
    """The checkpoint intervals to score: the cheapest first (fewest expected events), as
    many as the search budget holds, at least one; in ascending order."""
    kept, total = [], 0.0
    for k in sorted(intervals, key=lambda k: expected_events(m, k)):
        total += expected_events(m, k) * samples
        if kept and total > SEARCH_EVENTS:
            break
        kept.append(k)
    return sorted(kept)


def require_samples_fit(m, intervals: list[int], samples: int) -> None:
    """Refuse, before playing any, a Monte-Carlo whose runs cannot fit the event budget of
    one question even at the cheapest checkpoint interval (many samples of a long run): the
    interval search plays max(2, samples / 2) runs at a first interval and as many at the two
    refinement points around the best (sim/reliability.py best_interval), then the final
    ``samples`` runs. A lower bound (the cheapest interval's events): a run that passes may
    still stop at the budget (EventBudget), one that fails here would surely stop there."""
    cheapest = min((expected_events(m, k) for k in intervals), default=math.inf)
    runs = 3 * max(2, samples // 2) + samples
    if math.isfinite(cheapest) and runs * cheapest > 2 * SEARCH_EVENTS:
        raise ClusterSimError(
            f"run.samples {samples:,}: each simulated run plays ~{cheapest:,.0f} segments and "
            f"interruptions, {runs:,} runs with the interval search ~{runs * cheapest:,.0f} "
            f"(limit {2 * SEARCH_EVENTS:,}); lower run.samples")


def require_feasible(m, every_steps: int | None = None, user_interval: bool = False) -> None:
    """Raise one clear line when a run with this checkpoint interval cannot be simulated
    (``user_interval``: the interval is the user's, so 'auto' may help)."""
    k = every_steps or m.every_steps
    if feasible(m, k):
        return
    rate = interruption_rate(m)
    recovery = m.restart_s + m.load_s
    if not recovers(m):
        raise ClusterSimError(
            f"run never finishes: a restart + load of {_dur(recovery)} is {rate * recovery:.3g} "
            f"times the mean time between interruptions ({_dur(1 / rate)}), so each failure "
            f"expects ~e^{rate * recovery:.3g} further failures before the job is back. Lower "
            "run.failures or restart_s")
    if rate > 0 and _log_failures_per_segment(rate, recovery, m.step_s + m.ckpt_block_s) \
            > math.log(MAX_EVENTS):
        raise ClusterSimError(
            f"run never finishes: the mean time between interruptions is {_dur(1 / rate)}, "
            f"against a step of {_dur(m.step_s)}, a checkpoint of {_dur(m.ckpt_block_s)} and a "
            f"restart + load of {_dur(recovery)}; even with a checkpoint every step one step "
            f"expects more than {MAX_EVENTS:,} interruptions before it commits. Lower "
            f"run.failures, restart_s or the step time")
    raise ClusterSimError(
        f"run too long to simulate: {m.total_steps:,} steps of {_dur(m.step_s)} with a checkpoint "
        f"every {k:,} steps expect ~{expected_events(m, k):.3g} segments and interruptions "
        f"(limit {MAX_EVENTS:,}); shorten the run (run.tokens or run.steps) or lower "
        f"run.failures" + (", or let workload.checkpoint.every_steps be 'auto'" if user_interval else ""))


def _dur(s: float) -> str:
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0), ("s", 1.0)):
        if s >= size:
            return f"{s / size:.3g} {unit}"
    return f"{s:.3g} s"
