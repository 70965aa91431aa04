"""Persistent slow nodes: a node turns slow, stays slow, gates every synchronous step.

Stragglers in real fleets persist: a node with a throttled GPU, a flaky link or a noisy
neighbour stays slow until it is found and drained (MegaScale, Jiang et al. NSDI'24,
section 4: slow hosts are detected from per-rank timings and evicted; Llama 3 section 3.3.4
likewise hunts slow ranks). So, unlike per-step independent draws, slowness here comes in
*episodes* on the wall clock:

- onsets are a Poisson process with rate ``rate`` for the whole job
  (= nodes x per-node rate);
- an episode lasts an exponential time of mean ``mean_s`` if nobody acts, or ends when the
  node is drained ``detect_s`` after it turned slow, whichever comes first;
- while at least one episode is open every synchronous step runs ``slowdown`` times slower
  (the slowest node gates the step; several slow nodes gate it no more than one).

The open episodes form an M/G/inf queue, so the job is gated a fraction
``1 - exp(-rate x E[length])`` of the wall clock and, with work progressing at 1/slowdown
while gated, the straggler loss is ``that x (1 - 1/slowdown)`` of the wall time. With
detection, E[length] <= detect_s, so the loss is at most ``rate x detect_s x (1 - 1/slowdown)``.

Steps are seconds and episodes hours, so progress is treated as a fluid: a step that
straddles an onset is slowed for the part after it.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from hw_models.errors import ClusterSimError


@dataclass(frozen=True)
class SlowNodes:
    rate: float                    # episode onsets per second of wall time, whole job
    mean_s: float                  # mean episode length when never drained (exponential)
    slowdown: float                # a gated step takes slowdown x as long
    detect_s: float | None = None  # drained this long after turning slow (None: never)
    drain_restart: bool = True     # draining restarts the job (else a live swap, no restart)

    def __post_init__(self) -> None:
        if self.rate < 0 or self.mean_s <= 0 or self.slowdown < 1 or (
                self.detect_s is not None and self.detect_s < 0):
            raise ClusterSimError(f"slow nodes need rate >= 0, mean_s > 0, slowdown >= 1, "
                                  f"detect_s >= 0 (got {self.rate}, {self.mean_s}, "
                                  f"{self.slowdown}, {self.detect_s})")

    @property
    def mean_length_s(self) -> float:
        """E[min(D, detect)] for exponential D of mean mean_s."""
        if self.detect_s is None:
            return self.mean_s
        return self.mean_s * -math.expm1(-self.detect_s / self.mean_s)

    @property
    def gated_fraction(self) -> float:
        """Stationary P(at least one episode open): M/G/inf with load rate x E[length]."""
        return -math.expm1(-self.rate * self.mean_length_s)

    @property
    def loss_fraction(self) -> float:
        """Wall time lost to slowness, per wall second, in steady state."""
        return self.gated_fraction * (1 - 1 / self.slowdown)


class SlowSchedule:
    """The union of slow episodes on the wall clock, drawn lazily in onset order."""

    def __init__(self, spec: SlowNodes, rng: np.random.Generator):
        self.spec, self.rng = spec, rng
        self.starts: list[float] = []       # merged gated intervals [start, end)
        self.ends: list[float] = []
        self.drains: list[float] = []       # times at which a slow node is drained
        self.next_onset = self._gap(0.0)

    def _gap(self, t: float) -> float:
        return t + self.rng.exponential(1 / self.spec.rate) if self.spec.rate > 0 else math.inf

    def _draw(self) -> None:
        """Add the next episode; onsets are monotone, so it can only merge with the last."""
        s, sp = self.next_onset, self.spec
        length = self.rng.exponential(sp.mean_s)
        if sp.detect_s is not None and length > sp.detect_s:
            length = sp.detect_s
            self.drains.append(s + length)
        if self.ends and s <= self.ends[-1]:
            self.ends[-1] = max(self.ends[-1], s + length)
        else:
            self.starts.append(s)
            self.ends.append(s + length)
        self.next_onset = self._gap(s)

    def _final(self, i: int) -> bool:
        """Interval i exists and no later onset can extend it."""
        while len(self.starts) <= i + 1 and math.isfinite(self.next_onset) and self.next_onset <= (
                self.ends[i] if len(self.starts) > i else math.inf):
            self._draw()
        return len(self.starts) > i

    def finish(self, t0: float, work: float) -> float:
        """Wall time at which ``work`` seconds of full-speed progress started at t0 end."""
        s = self.spec.slowdown
        t, left = t0, work
        i = bisect.bisect_right(self.ends, t0) if self.ends else 0
        while left > 0:
            if not self._final(i):
                return t + left                   # no slowness ever again
            a, b = self.starts[i], self.ends[i]
            if b <= t:                            # drawn late: already over
                i += 1
                continue
            if t < a:
                if left <= a - t:
                    return t + left
                left -= a - t
                t = a
            if left <= (b - t) / s:
                return t + left * s
            left -= (b - t) / s
            t = b
            i += 1
        return t

    def drain_time(self, j: int) -> float:
        """The j-th drain (in time order: onsets are monotone, detect_s is fixed)."""
        while len(self.drains) <= j and math.isfinite(self.next_onset):
            self._draw()
        return self.drains[j] if len(self.drains) > j else math.inf
