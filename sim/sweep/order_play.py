"""One-pass pipelines (GPipe, 1F1B, interleaved 1F1B) played from a cached order: the
waits of ``pipeline_play.play``'s list schedule resolved once per (schedule, ranks, chunks,
microbatches) (``order_of``), and each plan's times from one loop over that flat order
(``play_order``), the same times as ``play``; with each rank's data-parallel stream
(``pipeline_play.DPStream``) and activation copies (``Offload``) played along
(``play_order_shared``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from hw_models.errors import ClusterSimError
from sim.sweep.pipeline_play import DPStream, Played
from workloads.pipeline import Pipeline


@dataclass(frozen=True)
class Order:
    """The plan-independent structure of a pipeline whose every unit is one pass (GPipe,
    1F1B, interleaved 1F1B), flattened in one order in which each unit comes after its
    rank's previous unit and after the pass that feeds it: ``entries`` (price index
    ``rank * 2v + 2 chunk + backward?``, slot of the feeding pass or -1, link or -1: the
    transfer's (src, dst, gradient?) in ``links``); ``last`` the slot of each rank's last
    unit, ``last_bwd`` of each (rank, chunk)'s last backward, ``bwd`` (slot, rank,
    microbatch, chunk) of every backward."""
    p: int
    v: int
    entries: tuple[tuple[int, int, int, int], ...]
    links: tuple[tuple[int, int, bool], ...]
    last: tuple[int, ...]
    last_bwd: tuple[tuple[int, ...], ...]
    bwd: tuple[tuple[int, int, int, int], ...] = ()
    prev2: tuple[int, ...] = ()     # per entry, the slot of its rank's entry two before, or -1


# Units one cached pipeline order may place, as many as one simulated step may have
# (sim/setup.py MAX_GRAPH_OPS): the order is built unit by unit in Python.
MAX_ORDER_UNITS = 400_000


@lru_cache(maxsize=256)
def order_of(kind: str, p: int, v: int, m: int) -> Order:
    """``Order`` of a (schedule, ranks, chunks, microbatches): the orders of
    ``Pipeline.steps``, each rank's units taken as far as their inputs allow, rank after
    rank, until all are placed (the list schedule of ``play`` with its waits resolved
    once). A transfer's link is booked by its one receiver in the receiver's order, so
    any such order gives the same times."""
    units = 2 * p * v * m                     # a forward and a backward per chunk and microbatch
    if units > MAX_ORDER_UNITS:
        raise ClusterSimError(
            f"the {kind} pipeline order has {m:,} microbatches x {p} stages x {v} chunks, "
            f"~{units:,} units to place (limit {MAX_ORDER_UNITS:,}); lower global_batch or "
            "raise micro_batch / dp")
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
    bwd = tuple(sorted((i, k[0], k[1], k[2]) for k, i in slot.items() if k[3]))
    mine: list[list[int]] = [[] for _ in range(p)]
    prev2 = []
    for i, e in enumerate(entries):
        prev2.append(mine[e[3]][-2] if len(mine[e[3]]) >= 2 else -1)
        mine[e[3]].append(i)
    return Order(p, v, tuple(entries), tuple(sorted(links, key=links.get)), last, last_bwd, bwd,
                 tuple(prev2))


def play_order(order: Order, secs: list[float], hops: list[float], gather: float) -> Played:
    """``play`` for an ``Order``: ``secs`` the seconds of each price index (rank, chunk,
    pass), ``hops`` of one transfer on each of ``order.links``, ``gather`` of the
    receiver's TP all-gather before each pass fed by another rank. Each unit starts at
    max(its rank free, its input there), an input being there one hop after both the
    pass that made it and the link's previous transfer."""
    end: list[float] = []
    clock = [0.0] * order.p
    link = [0.0] * len(order.links)
    _play_entries(order.entries, secs, hops, gather, end, clock, link)
    return Played([end[i] for i in order.last],
                  [[end[i] for i in row] for row in order.last_bwd])


def _play_entries(entries, secs: list[float], hops: list[float], gather: float,
                  end: list[float], clock: list[float], link: list[float]) -> None:
    """``play_order``'s loop over ``entries``, from the state ``end``, ``clock``, ``link``."""
    for k, src, ln, r in entries:
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


def play_order_shared(order: Order, secs: list[float], compute: list[float], hops: list[float],
                      gather: float, streams: list[DPStream], layered: dict,
                      launched: dict | None = None, offload: Offload | None = None) -> Played:
    """``play_order`` with each rank's DP stream played along (``DPStream``): each pass at
    its shared rate (``compute``: the compute seconds of each price index), the
    backwards of ``layered`` layer by layer (slot -> (seconds, compute seconds, key) per
    layer in the order they run, workloads/training.py ``_split_backward``: each (rank,
    chunk)'s last backward), each layer's key marked as it ends, ("C", chunk) when the
    chunk's gradients are complete, "end" after the rank's last pass; those of
    ``launched`` (ZeRO-2: every backward, slot -> layers as ``launch_layers`` takes
    them) launching their own buckets; ``offload``: the activation copies to and from
    the host (``Offload``), each backward after its reload."""
    end: list[float] = []
    clock = [0.0] * order.p
    link = [0.0] * len(order.links)
    lasts = {slot: (r, c) for r, row in enumerate(order.last_bwd) for c, slot in enumerate(row)}
    first = min(min(lasts), min(launched)) if launched else min(lasts)
    if offload is not None:
        first = 0
        d2h, h2d = [0.0] * order.p, [0.0] * order.p
        prev2 = order.prev2
    # before any last backward (ZeRO-2: any backward) no bucket is in flight
    _play_entries(order.entries[:first], secs, hops, gather, end, clock, link)
    for i in range(first, len(order.entries)):
        k, src, ln, r = order.entries[i]
        t = clock[r]
        if src >= 0:                # as play_order
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
        if offload is not None and k & 1:  # the reload, once the step before last is done
            t = max(t, _reload(offload, h2d, r, k, end[prev2[i]] if prev2[i] >= 0 else 0.0))
        st = streams[r]
        t = _shared_pass(st, t, layered.get(i), launched.get(i) if launched else None,
                         secs[k], compute[k])
        rc = lasts.get(i)
        if rc is not None:
            st.mark(("C", rc[1]), t)
        if offload is not None and not k & 1:    # the forward's activations to the host
            d2h[r] = (t if t > d2h[r] else d2h[r]) + offload.copy[k // 2]
        clock[r] = t
        end.append(t)
    for r in range(order.p):
        streams[r].mark("end", clock[r])
    return Played([end[i] for i in order.last],
                  [[end[i] for i in row] for row in order.last_bwd],
                  [st.free for st in streams], max(d2h) if offload is not None else 0.0)


def _reload(offload: Offload, h2d: list[float], r: int, k: int, issued: float) -> float:
    """When the reload before rank ``r``'s backward of price index ``k``, issued at
    ``issued``, ends on the rank's host-to-device stream, free at ``h2d[r]``."""
    h2d[r] = max(issued, h2d[r]) + offload.reload[k // 2]
    return h2d[r]


def _shared_pass(st: DPStream, t: float, layers, launched, secs: float, compute: float) -> float:
    """When a pass started at ``t`` on ``st``'s rank ends: layer by layer launching its
    buckets (``launched``), layer by layer marking its layers' keys (``layers``), or
    whole, at its shared rate while a bucket is in flight."""
    if launched is not None:
        return launch_layers(st, t, launched)
    if layers:
        for w, cw, key in layers:
            t = st.run(t, w, cw)
            st.mark(key, t)
        return t
    if st.spans and st.spans[-1][1] > t:     # a bucket in flight from here on
        return st.run(t, secs, compute)
    return t + secs


@dataclass(frozen=True)
class Offload:
    """Activation offload of a one-pass pipeline (workloads/offload.py
    ``ActivationOffload``), per ``rank * v + chunk``: ``copy`` the seconds of a forward's
    activations to the host (after the forward, one after the other on the rank's
    device-to-host stream, waited for by nothing but the step's end), ``reload`` of
    their way back before a backward (one after the other on the host-to-device
    stream, each issued once the rank's step before last is done)."""
    copy: tuple[float, ...]
    reload: tuple[float, ...]


def launch_layers(st: DPStream, t: float, layers) -> float:
    """A backward run layer by layer from ``t`` on ``st`` (``layers``: seconds, the
    layer's rate while a bucket is in flight, ``DPStream.run``'s 1 - f min(N, S - 1) / S,
    and the seconds of the buckets the layer completes), each bucket launched as its
    layer ends, after the one before it, holding N SMs (``st.zero2_sms``). ZeRO-2: each
    backward's buckets come right after the previous backward's in the stream's order,
    so they go without ``DPStream.mark``'s look-up, and every span in flight is one of
    them (one rate per layer). When the backward ends."""
    spans, free, k = st.spans, st.free, st.zero2_sms
    for w, rate, secs in layers:
        if free > t and rate < 1.0:         # DPStream.run with one kernel size
            i = st.pos
            while spans[i][1] <= t:
                i += 1
            n = len(spans)
            while True:
                a, b, _ = spans[i]
                if a > t:
                    if t + w <= a:
                        t += w
                        break
                    w -= a - t
                    t = a
                if t + w / rate <= b:
                    t += w / rate
                    break
                w -= (b - t) * rate
                t = b
                i += 1
                if i == n:
                    t += w
                    break
            st.pos = i
        else:
            t += w
        for b in secs:
            start = t if t > free else free
            free = start + b
            spans.append((start, free, k))
    st.free = free
    return t
