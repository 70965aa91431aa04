"""Max-min fair sharing of link bandwidth among flows, and its SimPy driver.

``maxmin_rates`` is progressive filling (Bertsekas & Gallager, Data Networks, 6.5.2):
all unfrozen flows grow at the same rate until a link saturates; flows through it
freeze; repeat. Each round is one sparse matrix-vector product, so a round costs
O(total path length), and the number of rounds is the number of distinct bottleneck
levels (a handful for collectives), not the number of flows.

``Fabric`` keeps the active flows of one simulation. Whenever flows start or end it
advances every flow's remaining bytes at its old rate, re-solves the rates and sleeps
until the next completion. Flows started at the same simulated instant are solved
once (they only wake the driver, which runs after them).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np
import simpy
from scipy.sparse import csr_matrix

REL_EPS = 1e-9


def maxmin_rates(paths: Sequence[np.ndarray], cap: np.ndarray) -> np.ndarray:
    """Max-min fair rate (bytes/s) of each flow; ``paths`` are link-id arrays into ``cap``.

    A flow with an empty path (source == destination) gets an infinite rate.
    """
    n = len(paths)
    rate = np.zeros(n)
    lens = np.fromiter((len(p) for p in paths), dtype=np.int64, count=n)
    if n == 0:
        return rate
    rate[lens == 0] = np.inf
    cols = np.concatenate(paths) if lens.sum() else np.zeros(0, np.int64)
    links, cols = np.unique(cols, return_inverse=True)        # only the links in use
    rows = np.repeat(np.arange(n), lens)
    a = csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(n, len(links)))
    at = a.T.tocsr()
    rem = cap[links].astype(float).copy()
    tol = REL_EPS * cap[links]
    active = lens > 0
    while active.any():
        cnt = at @ active.astype(float)
        used = cnt > 0
        inc = np.min(rem[used] / cnt[used])
        rate[active] += inc
        rem -= inc * cnt
        saturated = used & (rem <= tol)
        active &= ~((a @ saturated.astype(float)) > 0)
    return rate


class Fabric:
    """Active flows on one topology in one SimPy environment."""

    def __init__(self, env: simpy.Environment, cap: np.ndarray):
        self.env, self.cap = env, cap
        self.paths: list[np.ndarray] = []
        self.remaining = np.zeros(0)
        self.rate = np.zeros(0)
        self.owner: list[list] = []          # per flow: [pending count, done event]
        self.last = 0.0
        self.events = 0                      # flow starts + ends, for benchmarks
        self.solves = 0
        self._wake: simpy.Event | None = None
        env.process(self._run())

    def transfer(self, flows: Sequence[tuple[np.ndarray, float]]) -> simpy.Event:
        """Start flows (path, bytes) now; the event fires when all of them are done."""
        done = self.env.event()
        flows = [(p, b) for p, b in flows if b > 0]
        if not flows:
            done.succeed()
            return done
        self._advance()
        owner = [len(flows), done]
        self.paths += [p for p, _ in flows]
        self.remaining = np.concatenate([self.remaining, [float(b) for _, b in flows]])
        self.rate = np.concatenate([self.rate, np.zeros(len(flows))])
        self.owner += [owner] * len(flows)
        self.events += len(flows)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()
        return done

    def _advance(self) -> None:
        dt = self.env.now - self.last
        if dt > 0 and len(self.remaining):
            fin = np.isfinite(self.rate)
            self.remaining[fin] -= self.rate[fin] * dt
            self.remaining[~fin] = 0.0
        self.last = self.env.now

    def _complete(self) -> None:
        # Done: less than a picosecond of sending left, or a micro-byte (round-off).
        done = self.remaining <= self.rate * 1e-12 + 1e-6
        if not done.any():
            return
        for i in np.flatnonzero(done):
            owner = self.owner[i]
            owner[0] -= 1
            if owner[0] == 0:
                owner[1].succeed()
        keep = np.flatnonzero(~done)
        self.events += int(done.sum())
        self.paths = [self.paths[i] for i in keep]
        self.owner = [self.owner[i] for i in keep]
        self.remaining, self.rate = self.remaining[keep], self.rate[keep]

    def _run(self) -> Generator:
        while True:
            self._advance()
            self._complete()
            self._wake = self.env.event()
            if not self.paths:
                yield self._wake
                continue
            self.rate = maxmin_rates(self.paths, self.cap)
            self.solves += 1
            with np.errstate(divide="ignore"):
                dt = float(np.min(self.remaining / self.rate))
            yield self.env.any_of([self.env.timeout(max(dt, 0.0)), self._wake])
