"""The SimPy driver of max-min fair link sharing (sim/network/maxmin.py).

``Fabric`` keeps the active flows of one simulation, grouped in batches (one
collective phase each). Max-min rates of flows that share no link, directly or
through other flows, are independent, so when flows start or end only the connected
component of batches around the change is re-solved; every other batch keeps its
rates and its remaining bytes are brought up to date lazily, when it is next touched.
A component's rates depend only on which flows it holds: they are cached by the keys of
its batches (the collective plans they came from) and the flows each still has, so a
combination of transfers that recurs (every microbatch's pipeline sends beside the
same gradient bucket) is solved once.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np
import simpy
from simpy.events import NORMAL, URGENT

from hw_models.routing import unique_ints
from sim.network.maxmin import solve

_min = np.minimum.reduce                     # ndarray.min() without its wrapper
# A flow is done with less than a picosecond of sending left, or a micro-byte (round-off).
DONE_S, DONE_B = 1e-12, 1e-6


class Flows:
    """The flows of a batch still in flight: ``lens[i]`` links of flow i, listed flow by flow
    in ``links`` (with the fraction ``coef`` of the flow on each; None: all 1, a single
    path), their ``weight`` and distinct ``ulinks``. Immutable and shared: every batch of
    one plan key starts from the same Flows, and the Flows left after a given set of its
    flows ends is derived once (``after``), so the microbatches that repeat a transfer do
    not rebuild its arrays. ``sig`` names the flows in the rate cache: the plan key and the
    original indices of the flows left (None: all of them)."""
    __slots__ = ("lens", "links", "coef", "weight", "ulinks", "sig", "after", "placed")

    def __init__(self, lens, links, coef, weight, ulinks, sig):
        self.lens, self.links, self.coef, self.weight = lens, links, coef, weight
        self.ulinks, self.sig = ulinks, sig
        self.after: dict[bytes, tuple[Flows, np.ndarray, np.ndarray]] = {}
        self.placed = int(weight.sum())        # flows represented (weights summed)

    @classmethod
    def of(cls, row, links, coef, weight, ulinks, key) -> Flows:
        """From an incidence list ``row``/``links``, built flow by flow (``row`` ascending)."""
        if len(row) > 1 and not bool(np.all(row[1:] >= row[:-1])):
            raise ValueError("flows' incidences must be listed flow by flow (row ascending)")
        unit = coef is None or bool(np.all(coef == 1.0))
        return cls(np.bincount(row, minlength=len(weight)), links, None if unit else coef,
                   weight, unique_ints(links) if ulinks is None else ulinks,
                   None if key is None else (key, None))

    def row(self) -> np.ndarray:
        """Flow index of each incidence."""
        return np.repeat(np.arange(len(self.lens)), self.lens)

    def without(self, keep: np.ndarray, kb: bytes, mark: np.ndarray
                ) -> tuple[Flows, np.ndarray, np.ndarray]:
        """(the Flows of the kept flows, their indices here, the links no flow uses any more);
        ``kb``: ``keep.tobytes()``; ``mark``: a scratch array over all links, all False (left
        so)."""
        hit = self.after.get(kb)
        if hit is None:
            idx = np.flatnonzero(keep)
            inc = np.repeat(keep, self.lens)
            links = self.links[inc]
            mark[links] = True
            still = mark[self.ulinks]
            mark[links] = False
            sig = None
            if self.sig is not None:
                ids = idx if self.sig[1] is None else np.frombuffer(self.sig[1], np.int64)[idx]
                sig = (self.sig[0], ids.tobytes())
            kept = Flows(self.lens[keep], links, None if self.coef is None else self.coef[inc],
                         self.weight[idx], self.ulinks[still], sig)  # ulinks: still sorted
            hit = self.after[kb] = (kept, idx, still)
        return hit[0], hit[1], self.ulinks[~hit[2]]


class Batch:
    """Flows started together (one phase of one collective); done when all are."""
    __slots__ = ("flows", "remaining", "rate", "t_last", "done", "version", "next_t", "t_start",
                 "finite")

    def __init__(self, flows: Flows, nbytes, done):
        self.flows, self.remaining, self.done = flows, nbytes, done
        self.rate = np.zeros(len(nbytes))
        self.t_last, self.version, self.next_t = 0.0, 0, np.inf
        self.finite = True                   # no infinite rate (no empty-path flow) in ``rate``

    @property
    def weight(self) -> np.ndarray:
        """Flows each flow still in flight stands for (sim/storage_flows.py reads it)."""
        return self.flows.weight

    def advance(self, now: float) -> None:
        dt = now - self.t_last
        if dt > 0 and self.finite:         # the common case: no empty-path flow
            self.remaining -= self.rate * dt
        elif dt > 0:
            step = self.rate * dt
            fin = np.isfinite(step)
            if fin.all():
                self.remaining -= step
            else:
                self.remaining[fin] -= step[fin]
                self.remaining[~fin] = 0.0
        self.t_last = now

    def drop_finished(self, now: float, tolerance: float, mark: np.ndarray
                      ) -> tuple[int, np.ndarray | None]:
        """Remove finished flows; return how many ended and the links no flow of the batch
        uses any more (None: all ended). With ``tolerance`` d, flows that would finish
        within d x (time since the batch started) end now too (early by at most that), so
        nearly simultaneous ends cost one re-solve, not one each."""
        slack = DONE_S + tolerance * (now - self.t_start)
        keep = self.remaining > self.rate * slack + DONE_B
        kb = keep.tobytes()                    # one byte per flow: 1 kept, 0 ended
        ended = kb.count(0)
        if ended == len(kb):                   # all done: the batch is retired as it is
            self.remaining = self.remaining[:0]
            return ended, None
        if ended:
            self.flows, idx, gone = self.flows.without(keep, kb, mark)
            self.remaining, self.rate = self.remaining[idx], self.rate[idx]
            return ended, gone
        return 0, _NONE


_NONE = np.zeros(0, np.int64)


class Fabric:
    """Active flows on one topology in one SimPy environment."""

    def __init__(self, env: simpy.Environment, cap: np.ndarray, rate_cache: dict | None = None,
                 tolerance: float = 0.0, flows_cache: dict | None = None):
        """``rate_cache``, ``flows_cache``: rates per component and Flows per plan key, to
        share between the fabrics of one network (its private environments)."""
        self.env, self.cap, self.tolerance = env, cap, tolerance
        self.batches: dict[int, Batch] = {}
        self._mark = np.zeros(len(cap), dtype=bool)       # scratch, all False between uses
        self.rate_cache = {} if rate_cache is None else rate_cache
        # plan key -> its Flows (every batch of the key)
        self._flows: dict = {} if flows_cache is None else flows_cache
        self.events = 0                      # flow starts + ends, for benchmarks
        self.flows_placed = 0                # flows represented (weights summed)
        self.solves = 0
        self.solved_flows = 0
        self._next_id = 0
        self._new: list[int] = []
        self._heap: list[tuple[float, int, int]] = []
        # The driver is a pair of callbacks, not a process: a step retires, re-solves and
        # arms a timer for the next flow end; a start wakes it. ``_gen`` numbers the steps:
        # a timer or wake-up of an earlier step is stale. Events are scheduled exactly as a
        # process waiting on ``any_of([timeout, wake])`` would have them (one hop through
        # the condition when a timer is armed), so results do not depend on the driver.
        self._gen = 0
        self._woken = 0                      # the step whose wake-up was already sent
        self._fired = False                  # this step's timer or wake-up went off
        self._idle = True                    # no timer armed: a wake-up resumes directly
        _call(env, self._step, URGENT)

    def transfer(self, flows: Sequence[tuple[np.ndarray, float]]) -> simpy.Event:
        """Start flows (path, bytes) now; the event fires when all of them are done."""
        flows = [(np.asarray(p, np.int64), float(b)) for p, b in flows if b > 0]
        lens = np.fromiter((len(p) for p, _ in flows), dtype=np.int64, count=len(flows))
        links = np.concatenate([p for p, _ in flows]) if lens.sum() else np.zeros(0, np.int64)
        return self.start(np.repeat(np.arange(len(flows)), lens), links,
                          np.array([b for _, b in flows]), np.ones(len(flows)))

    def start(self, row: np.ndarray, links: np.ndarray, nbytes: np.ndarray, weight: np.ndarray,
              coef: np.ndarray | None = None, key=None, ulinks: np.ndarray | None = None
              ) -> simpy.Event:
        """Start a prepared batch: incidence ``row``/``links`` listed flow by flow (with the
        fraction ``coef`` of the flow on each link, default 1), bytes and weight per flow;
        ``ulinks``: the distinct links, if the caller has them (sorted). A ``key`` names
        the flows: every batch started with it must have the same row/links/coef/weight."""
        done = self.env.event()
        if len(nbytes) == 0:
            done.succeed()
            return done
        flows = self._flows.get(key) if key is not None else None
        if flows is None:                    # a key names the same flows every time
            flows = Flows.of(row, links, coef, weight, ulinks, key)
            if key is not None:
                self._flows[key] = flows
        b = Batch(flows, np.array(nbytes, dtype=float), done)
        b.t_last = b.t_start = self.env.now
        bid = self._next_id
        self._next_id += 1
        self.batches[bid] = b
        self._new.append(bid)
        self.events += len(nbytes)
        self.flows_placed += flows.placed
        if self._woken != self._gen:
            self._woken = self._gen
            _call(env=self.env, fn=self._on_wake(self._gen))
        return done

    def _remove(self, bid: int) -> None:
        b = self.batches.pop(bid)
        b.done.succeed()

    def _finish_due(self, now: float) -> tuple[set[int], list[np.ndarray]]:
        """Retire finished flows of batches due now: (batches to re-solve, freed links)."""
        touched: set[int] = set()
        freed: list[np.ndarray] = []
        heap, batches = self._heap, self.batches
        while heap and heap[0][0] <= now:
            _, bid, ver = heapq.heappop(heap)
            b = batches.get(bid)
            if b is None or b.version != ver:
                continue
            b.advance(now)
            ended, gone = b.drop_finished(now, self.tolerance, self._mark)
            self.events += ended
            if gone is None:
                freed.append(b.flows.ulinks)
                self._remove(bid)
            elif ended:
                freed.append(gone)
                touched.add(bid)
            else:                      # round-off: not quite done, look again
                with np.errstate(divide="ignore"):
                    b.next_t = now + max(float(np.min(b.remaining / b.rate)), 0.0)
                b.next_t = max(b.next_t, float(np.nextafter(now, np.inf)))
                heapq.heappush(heap, (b.next_t, bid, ver))
        return touched, freed

    def _component(self, seeds: set[int], freed: list[np.ndarray]) -> list[int]:
        """All batches connected to the seeds (or to the freed links) through shared links."""
        batches = self.batches
        if len(seeds) == 1 and len(batches) == 1:  # the common case: a batch alone
            bid = next(iter(seeds))
            if bid in batches:
                return [bid]
        comp = {b for b in seeds if b in batches}
        if len(comp) == len(batches):              # every batch in flight: nothing to add
            return sorted(comp)
        touched = [self.batches[bid].flows.ulinks for bid in comp] + freed
        if not touched:
            return []
        mark = np.zeros(len(self.cap), dtype=bool)
        mark[touched[0] if len(touched) == 1 else np.concatenate(touched)] = True
        # Few batches are in flight at once (a handful of collective phases and sends):
        # a pass over them is cheaper than keeping per-link counts up to date.
        rest = [(bid, b.flows.ulinks) for bid, b in self.batches.items() if bid not in comp]
        grew = True
        while grew and rest:
            grew, left = False, []
            for bid, ulinks in rest:
                if mark[ulinks].any():
                    comp.add(bid)
                    mark[ulinks] = True
                    grew = True
                else:
                    left.append((bid, ulinks))
            rest = left
        return sorted(comp)

    def _solve(self, comp: list[int], now: float) -> None:
        batches = self.batches
        if len(comp) == 1:                  # the common case: one batch, rates cached
            bid = comp[0]
            b = batches[bid]
            b.advance(now)
            sig = b.flows.sig
            sig = None if sig is None else (sig,)    # as _signature([b])
            hit = self.rate_cache.get(sig) if sig is not None else None
            if hit is None:
                hit = self._solve_rates([b], sig)
            rates, finite, positive = hit
            self._reschedule(bid, b, rates, finite, positive, now)
            return
        bs = [batches[i] for i in comp]
        for b in bs:
            b.advance(now)
        sig = self._signature(bs)
        hit = self.rate_cache.get(sig) if sig is not None else None
        if hit is None:
            hit = self._solve_rates(bs, sig)
        rates, finite, positive = hit
        off = 0
        for bid, b in zip(comp, bs, strict=True):
            n = len(b.remaining)
            self._reschedule(bid, b, rates if n == len(rates) else rates[off:off + n],
                             finite, positive, now)
            off += n

    def _reschedule(self, bid: int, b: Batch, rates: np.ndarray, finite: bool, positive: bool,
                    now: float) -> None:
        """Give batch ``bid`` its new ``rates`` and queue when its first flow ends."""
        b.rate, b.finite = rates, finite
        b.version += 1
        if positive:
            b.next_t = now + max(float(_min(b.remaining / rates)), 0.0)
        else:
            with np.errstate(divide="ignore"):
                b.next_t = now + max(float(_min(b.remaining / rates)), 0.0)
        heapq.heappush(self._heap, (b.next_t, bid, b.version))

    def _solve_rates(self, bs: list[Batch], sig: tuple | None) -> tuple[np.ndarray, bool, bool]:
        """Max-min rates of the batches' flows (a component not seen before), with whether
        all are finite and all positive; kept in the rate cache under ``sig``."""
        sizes = [len(b.remaining) for b in bs]
        base = np.cumsum([0] + sizes[:-1])
        fs = [b.flows for b in bs]
        row = np.concatenate([f.row() + o for f, o in zip(fs, base, strict=True)])
        links = np.concatenate([f.links for f in fs])
        weight = np.concatenate([f.weight for f in fs])
        coef = None if all(f.coef is None for f in fs) else np.concatenate(
            [np.ones(len(f.links)) if f.coef is None else f.coef for f in fs])
        rates = solve(row, links, int(sum(sizes)), self.cap, weight, self.tolerance, coef)
        self.solves += 1
        self.solved_flows += int(sum(sizes))
        hit = (rates, bool(np.isfinite(rates).all()), bool((rates > 0).all()))
        if sig is not None:
            self.rate_cache[sig] = hit
        return hit

    @staticmethod
    def _signature(bs: list[Batch]) -> tuple | None:
        """What the solve depends on: the flows (paths, weights) of each batch, named by the
        batch's plan key and which of its flows are still in flight. Rates depend on
        nothing else (not on bytes left), so a component seen before is not re-solved."""
        sig = tuple(b.flows.sig for b in bs)
        return None if None in sig else sig

    def _on_wake(self, gen: int):
        """The callback of a timer or wake-up sent by step ``gen``."""
        def fire(_event) -> None:
            if gen != self._gen or self._fired:
                return                            # stale, or this step already woke
            self._fired = True
            if self._idle:
                self._step(None)
            else:                                 # through the condition, as any_of does
                _call(self.env, self._step)
        return fire

    def _step(self, _event) -> None:
        now = self.env._now                  # Environment.now without its property call
        touched, freed = self._finish_due(now)
        if self._new:
            touched.update(self._new)
            self._new = []
        if touched or freed:
            comp = self._component(touched, freed)
            if comp:
                self._solve(comp, now)
        self._gen += 1
        self._fired = False
        heap, batches = self._heap, self.batches
        while heap:
            b = batches.get(heap[0][1])
            if b is not None and b.version == heap[0][2]:
                break
            heapq.heappop(heap)                   # stale: retired or re-solved since
        self._idle = not heap
        if heap:
            timer = self.env.timeout(max(heap[0][0] - now, 0.0))
            timer.callbacks.append(self._on_wake(self._gen))


def _call(env: simpy.Environment, fn, priority=NORMAL) -> None:
    """Run ``fn(event)`` when the environment reaches the event scheduled now."""
    ev = simpy.Event(env)
    ev._ok, ev._value = True, None
    ev.callbacks.append(fn)
    env.schedule(ev, priority)
