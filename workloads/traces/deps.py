"""Dependencies of one rank rebuilt from its Kineto events, as proto-nodes.

What the trace holds, and the edge each gives (all times in microseconds):
- CPU op order per thread: a thread is a chain of nodes; the gap before an item becomes
  part of that item's first node (a Delay), so CPU time is replayed as measured.
- CPU launch -> GPU op through the CUDA correlation id: a launch is split where its GPU op
  started (or at its end), and the GPU op depends on the first part.
- order within a GPU stream: the stream is a chain; an unexplained idle gap before an op
  becomes a Delay on the stream.
- cross-stream waits (event record / stream wait event): where an op starts later than
  its stream and its launch allow, the op of another stream of the device that ended
  last before it is taken as the event it waited on (Kineto's runtime records carry no
  event handles, so the edge is inferred from the timing).
- CPU-blocking calls (device/stream/event synchronize, a copy that returns after its GPU
  op, e.g. device-to-host): the rest of the call depends on the GPU op it waited for.
- GPU-paced steps: where the GPU runs a step's work well after the CPU launched it (the
  CPU's ProfilerStep ends before its kernels do and the device is busy), the step is the
  span of its GPU work, not the CPU annotation (``_gpu_steps``).
- CPU-only traces (gloo): top-level ops per thread; a ``gloo:*`` collective depends on the
  ``c10d::`` call that issued it, and the issuing thread's next op waits for it.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

from workloads.traces.classify import classify
from workloads.traces.events import ANNOTATION, CPU_OP, GPU_KINDS, RUNTIME, Event

SYNC_CALLS = frozenset({"cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize",
                        "hipDeviceSynchronize", "hipStreamSynchronize", "hipEventSynchronize",
                        "cudaMemcpy", "hipMemcpy"})
# Timestamps are rounded to ~1 ns in Kineto (and to 1 us in older traces): edges that need
# "ended before" comparisons allow this slack so they are not lost to rounding.
EPS_US = 1.0
# How many recently finished GPU ops are scanned for the op a stream waited on.
_CROSS_SCAN = 64
# A device busy at least this share of a span paces it; below it the host does (HTA's
# temporal breakdown calls a run launch/CPU-bound when the GPU idles more than it works).
BUSY_PACED = 0.5


@dataclass(slots=True)
class Proto:
    """A node before its id is known: ``op`` is (kind, payload) turned into an Op later."""
    stream: str
    start: float          # measured start of the node (us)
    end: float            # measured end (us)
    kind: str             # delay | gpu | marker | coll_cpu | coll_tail
    dur_us: float
    deps: list[int] = field(default_factory=list)
    name: str = ""
    event: Event | None = None


@dataclass
class RankProtos:
    protos: list[Proto] = field(default_factory=list)
    markers: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # step -> (p0, p1, us)
    t0: float = 0.0
    t_end: float = 0.0
    missing_corr: int = 0
    before_trace: int = 0     # GPU ops launched before the trace began (no launch recorded)
    step_basis: str = "cpu"   # "gpu": steps are the spans of their GPU work (_gpu_steps)
    gpu_ops: list[int] = field(default_factory=list)

    def add(self, p: Proto) -> int:
        self.protos.append(p)
        return len(self.protos) - 1


def is_step(ev: Event) -> bool:
    return ev.kind in (CPU_OP, ANNOTATION) and ev.name.startswith("ProfilerStep#")


def build_rank(events: list[Event], t0: float) -> RankProtos:
    """Proto-nodes of one rank; ``t0`` (us) is the start of the run, shared by all ranks."""
    rp = RankProtos()
    if not events:
        return rp
    rp.t0 = t0
    rp.t_end = max(e.ts + e.dur for e in events)
    gpu = sorted((e for e in events if e.kind in GPU_KINDS), key=lambda e: (e.ts, e.stream))
    steps = _dedupe_steps(e for e in events if is_step(e))
    if gpu:
        _gpu_rank(rp, events, gpu, steps)
    else:
        _cpu_rank(rp, events, steps)
    return rp


def _dedupe_steps(steps) -> list[Event]:
    seen: dict[str, Event] = {}
    for s in steps:
        if s.name not in seen or s.dur > seen[s.name].dur:
            seen[s.name] = s
    return sorted(seen.values(), key=lambda e: e.ts)


def _thread(ev: Event) -> str:
    return f"cpu:{ev.pid}:{ev.tid}"


def _gpu_stream(ev: Event) -> str:
    return f"gpu{ev.device}:s{ev.stream}" if ev.device >= 0 else f"gpu:{ev.pid}:{ev.tid}"


def _marker_items(steps: list[Event]) -> list[tuple[float, str, str]]:
    out = []
    for s in steps:
        out += [(s.ts, s.name, "start"), (s.ts + s.dur, s.name, "end")]
    return out


def _gpu_rank(rp: RankProtos, events: list[Event], gpu: list[Event], steps: list[Event]) -> None:
    by_corr = {e.corr: e for e in gpu if e.corr >= 0}
    gpu_proto: dict[int, int] = {}        # id(event) -> proto of the GPU op
    launch_cut: dict[int, tuple[int, float]] = {}  # id(gpu event) -> (proto, measured end)
    ends = sorted((e.ts + e.dur, i) for i, e in enumerate(gpu))
    end_times = [t for t, _ in ends]
    calls = [e for e in events if e.kind == RUNTIME and (e.corr in by_corr or e.name in SYNC_CALLS)]
    threads: dict[str, list] = {}
    for c in calls:
        threads.setdefault(_thread(c), []).append((c.ts, c))
    for s in steps:
        for t, name, which in _marker_items([s]):
            threads.setdefault(_thread(s), []).append((t, (name, which)))
    blocked: list[tuple[int, Event]] = []  # (proto of the call's remainder, GPU op waited on)
    launched = {id(by_corr[c.corr]): c.ts for c in calls if c.corr in by_corr}
    gsteps = _gpu_steps(steps, gpu, launched)
    for items in threads.values():
        items.sort(key=lambda x: x[0])
    handoff = _handoffs(threads)
    last_proto: dict[int, int] = {}
    for stream, items in threads.items():
        prev = rp.t0
        for t, item in items:
            if not isinstance(item, Event):  # a ProfilerStep boundary
                p = rp.add(Proto(stream, prev, t, "marker", max(0.0, t - prev), name=item[0]))
                _record_marker(rp, item, p, t)
                prev = max(prev, t)
                continue
            first = len(rp.protos)
            y = handoff.get(id(item))
            if y is not None and y.ts + y.dur > prev:
                prev = y.ts + y.dur
                rp.add(Proto(stream, prev, prev, "delay", 0.0, [("call", y)], name="handoff"))
            prev = _call(rp, stream, item, prev, by_corr, launch_cut, blocked, gpu, ends,
                         end_times)
            last_proto[id(item)] = len(rp.protos) - 1
            del first
    # CUPTI's correlation ids grow with every call; a GPU op whose id is below the first
    # recorded call's was launched before the profiler began recording (the GPU still ran
    # the warmup step's work when the active window opened), so it has no launch to link.
    first_corr = min((e.corr for e in events if e.kind == RUNTIME and e.corr >= 0),
                     default=-1)
    firsts = {id(f): name for name, f, _, _ in gsteps or ()}
    marks = _gpu_streams(rp, gpu, launch_cut, gpu_proto, ends, end_times, first_corr, firsts)
    _use_gpu_steps(rp, gsteps, marks, gpu_proto)
    for p, ev in blocked:
        rp.protos[p].deps.append(gpu_proto[id(ev)])
    for p in rp.protos:
        if p.name == "handoff":
            p.deps = [last_proto[id(p.deps[0][1])]]


def _use_gpu_steps(rp: RankProtos, gsteps, marks: dict[str, int], gpu_proto: dict) -> None:
    """GPU-paced steps run from the marker before their first op to their last op's end."""
    if gsteps:
        rp.step_basis = "gpu"
        rp.markers = {name: (marks[name], gpu_proto[id(last)], us)
                      for name, _, last, us in gsteps}


def _handoffs(threads: dict[str, list]) -> dict[int, Event]:
    """Thread hand-offs: a call that ends a thread's idle gap right after another thread
    went idle (the main thread waking when the autograd thread finishes backward, and the
    autograd thread starting when the main thread calls backward) depends on the other
    thread's last call."""
    calls = {t: [c for _, c in items if isinstance(c, Event)] for t, items in threads.items()}
    ends = {t: [c.ts + c.dur for c in cs] for t, cs in calls.items()}
    out: dict[int, Event] = {}
    for t, cs in calls.items():
        for k in range(1, len(cs)):
            x, prev_end = cs[k], cs[k - 1].ts + cs[k - 1].dur
            best = None
            for u, us in calls.items():
                i = bisect_right(ends[u], x.ts) - 1
                if u == t or i < 0 or ends[u][i] <= prev_end:
                    continue
                if i + 1 < len(us) and us[i + 1].ts <= x.ts:
                    continue  # the other thread kept working: no hand-off
                if best is None or ends[u][i] > best.ts + best.dur:
                    best = us[i]
            if best is not None:
                out[id(x)] = best
    return out


def _record_marker(rp: RankProtos, item: tuple[str, str], p: int, t: float) -> None:
    name, which = item
    p0, p1, _ = rp.markers.get(name, (-1, -1, 0.0))
    if which == "start":
        rp.markers[name] = (p, p1, t)
    else:
        rp.markers[name] = (p0, p, t - rp.protos[p0].end if p0 >= 0 else 0.0)


def _call(rp, stream, c: Event, prev: float, by_corr, launch_cut, blocked, gpu, ends,
          end_times) -> float:
    """One runtime call on a CPU thread: its gap and first part, then its remainder."""
    start, end = max(c.ts, prev), max(c.ts + c.dur, prev)
    g = by_corr.get(c.corr) if c.corr >= 0 else None
    if g is not None:
        cut = min(max(g.ts, start), end)
        p1 = rp.add(Proto(stream, prev, cut, "delay", cut - prev, name=c.name))
        launch_cut[id(g)] = (p1, cut)
        waited = g if end >= g.ts + g.dur - EPS_US and g.ts + g.dur > cut else None
        if waited is None:  # a launch held back by a full launch queue
            waited = _waited_on(gpu, ends, end_times, cut, end, late=True)
    else:
        p1 = rp.add(Proto(stream, prev, start, "delay", start - prev, name=c.name))
        cut, waited = start, _waited_on(gpu, ends, end_times, start, end)
    if waited is None:
        if end > cut:
            rp.add(Proto(stream, cut, end, "delay", end - cut, name=c.name))
        return end
    resume = max(cut, waited.ts + waited.dur)
    p2 = rp.add(Proto(stream, resume, end, "delay", max(0.0, end - resume), [p1],
                      name=c.name + " (wait)"))
    blocked.append((p2, waited))
    return end


def _waited_on(gpu, ends, end_times, start: float, end: float, late: bool = False
               ) -> Event | None:
    """The GPU op a blocking call waited for: the last to end before the call returned.
    With ``late``, only an op that ended in the second half of the call counts: a call
    that returns soon after a GPU op ends was waiting for it (CUDA's launch queue holds a
    bounded number of pending launches, so a CPU far ahead of its GPU blocks in the launch
    until a kernel completes); one ending early in a short call is a coincidence."""
    i = bisect_right(end_times, end + EPS_US) - 1
    if i < 0 or end_times[i] <= start:
        return None
    if late and end_times[i] < start + (end - start) / 2:
        return None
    return gpu[ends[i][1]]


def _gpu_steps(steps: list[Event], gpu: list[Event], launched: dict[int, float]
               ) -> list[tuple[str, Event, Event, float]] | None:
    """Steps measured on the GPU: (name, first op, last op, span us) per step, or None where
    the CPU annotations are the steps.

    A step's GPU work is the ops launched inside its CPU annotation (the rule Kineto uses
    for its ``gpu_user_annotation`` copies). When the CPU runs ahead of a busy GPU, the CPU
    annotation measures the launches, not the step: the first profiled steps end early
    while the launch queue fills (49 ms of a 94 ms step on h100_gpt_1p3b_s4k, 35 and 72 ms
    of 96 ms on v100_1rank). The steps are GPU-paced when, for every step, its GPU work
    ends after its CPU annotation (the CPU never waited for it), follows the previous
    step's GPU work without overlap (one sequence on the device) and keeps the device busy
    (``BUSY_PACED``); their time is then from the first op's start to the last op's end."""
    if not steps:
        return None
    out, prev_end = [], float("-inf")
    for s in steps:
        mine = [e for e in gpu if s.ts <= launched.get(id(e), float("-inf")) <= s.ts + s.dur]
        if not mine:
            return None
        first, last = mine[0], max(mine, key=lambda e: e.ts + e.dur)
        a, b = first.ts, last.ts + last.dur
        busy = sum(y - x for x, y in union_intervals([(e.ts, e.ts + e.dur) for e in mine]))
        if b <= s.ts + s.dur + EPS_US or a < prev_end - EPS_US or busy < BUSY_PACED * (b - a):
            return None
        out.append((s.name, first, last, b - a))
        prev_end = b
    return out


def union_intervals(iv: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of (start, end) intervals as sorted disjoint intervals."""
    out: list[list[float]] = []
    for a, b in sorted(iv):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _gpu_streams(rp, gpu, launch_cut, gpu_proto, ends, end_times, first_corr: int,
                 firsts: dict[int, str]) -> dict[str, int]:
    """GPU ops per stream; returns the zero-length marker placed right before the first op
    of each GPU-paced step (its end is that op's replayed start)."""
    marks: dict[str, int] = {}
    by_stream: dict[str, list[Event]] = {}
    for e in gpu:
        by_stream.setdefault(_gpu_stream(e), []).append(e)
    for stream, ops in by_stream.items():
        prev_end = rp.t0
        for e in ops:
            deps, ready = [], prev_end
            lc = launch_cut.get(id(e))
            if lc is None and 0 <= e.corr < first_corr:
                rp.before_trace += 1
            elif lc is None:
                rp.missing_corr += 1
            else:
                deps.append(lc[0])
                ready = max(ready, lc[1])
            cross = _cross_stream(gpu, ends, end_times, e, ready)
            if cross is not None:
                deps.append(("gpu", cross))
                ready = max(ready, cross.ts + cross.dur)
            start = max(e.ts, prev_end)
            if start - ready > 0:
                rp.add(Proto(stream, ready, start, "delay", start - ready, deps, name="gpu idle"))
                deps = []
            if id(e) in firsts:
                marks[firsts[id(e)]] = rp.add(Proto(stream, start, start, "marker", 0.0, deps,
                                                    name=firsts[id(e)] + " (gpu)"))
                deps = []
            p = rp.add(Proto(stream, start, start + e.dur, "gpu", e.dur, deps, e.name, e))
            rp.gpu_ops.append(p)
            if classify(e.name) == "nccl":  # this rank's completion after the shared transfer
                p = rp.add(Proto(stream, start + e.dur, start + e.dur, "coll_tail", 0.0, [],
                                 e.name + " (done)", e))
            gpu_proto[id(e)] = p
            prev_end = start + e.dur
    # Resolve the inferred cross-stream edges now that every GPU op has its proto.
    for p in rp.protos:
        if p.deps and any(isinstance(d, tuple) for d in p.deps):
            p.deps = [gpu_proto[id(d[1])] if isinstance(d, tuple) and d[0] == "gpu" else d
                      for d in p.deps]
    return marks


def _cross_stream(gpu, ends, end_times, e: Event, ready: float) -> Event | None:
    if e.ts - ready <= EPS_US:
        return None
    i = bisect_right(end_times, e.ts + EPS_US) - 1
    stop = max(-1, i - _CROSS_SCAN)
    while i > stop and end_times[i] > ready:
        other = gpu[ends[i][1]]
        if other.device == e.device and other.stream != e.stream:
            return other
        i -= 1
    return None


def _cpu_rank(rp: RankProtos, events: list[Event], steps: list[Event]) -> None:
    """CPU-only trace: top-level ops per thread, gloo collectives on their worker threads.

    A ``c10d::`` call queues its work and a gloo worker thread picks it up while the call may
    still be running (the first all-reduce's call lasts milliseconds), so the worker's op
    depends on the part of the issuing call before the worker started, not on its end. The
    issuing thread's next op after the transfer waited for it (``work.wait()``)."""
    threads: dict[str, list[Event]] = {}
    for e in events:
        if e.kind in (CPU_OP, ANNOTATION) and not is_step(e):
            threads.setdefault(_thread(e), []).append(e)
    top: dict[str, list[Event]] = {t: _top_level(evs) for t, evs in threads.items()}
    issuers = sorted((e for e in events if e.kind == CPU_OP and e.name.startswith("c10d::")),
                     key=lambda e: e.ts)
    colls = sorted((e for es in top.values() for e in es if is_cpu_collective(e)),
                   key=lambda e: e.ts)
    starts = {t: [e.ts for e in evs] for t, evs in top.items()}
    cuts: dict[int, list[tuple[float, Event]]] = {}   # id(issuing op) -> [(cut, gloo op)]
    waits: dict[int, list[Event]] = {}
    for c, i in zip(colls, issuers, strict=False):
        if _thread(i) not in top:
            continue
        owner = _container(top[_thread(i)], starts[_thread(i)], i)
        cuts.setdefault(id(owner), []).append((min(max(c.ts, owner.ts), owner.ts + owner.dur),
                                               c))
        nxt = next((e for e in top[_thread(owner)] if e.ts >= c.ts + c.dur - EPS_US), None)
        if nxt is not None:
            waits.setdefault(id(nxt), []).append(c)
    keys: dict[tuple[str, int], int] = {}   # ("end"|"cut", id(event)) -> proto
    issued = {id(c): ("cut", id(c)) for cs in cuts.values() for _, c in cs}
    cut_at = {id(c): t for cs in cuts.values() for t, c in cs}
    for stream, items in top.items():
        marks = [(t, (n, w)) for t, n, w in _marker_items(steps)] if steps and \
            stream == _thread(steps[0]) else []
        _cpu_thread(rp, stream, items, marks, (issued, cut_at, cuts, waits), keys)
    for p in rp.protos:  # resolve edges to events of other threads
        p.deps = [keys[x] if isinstance(x, tuple) else x for x in p.deps]


def _cpu_thread(rp, stream, items, marks, links, keys) -> None:
    issued, cut_at, cuts, waits = links
    seq = sorted([(e.ts, e) for e in items] + marks, key=lambda x: x[0])
    prev = rp.t0
    for t, item in seq:
        if not isinstance(item, Event):
            p = rp.add(Proto(stream, prev, t, "marker", max(0.0, t - prev), name=item[0]))
            _record_marker(rp, item, p, t)
            prev = max(prev, t)
            continue
        deps = [(("end", id(w)), w.ts + w.dur) for w in waits.get(id(item), ())]
        if id(item) in issued:
            deps.append((issued[id(item)], cut_at[id(item)]))
        ready = max([prev] + [at for _, at in deps])
        first = [k for k, _ in deps]
        end = max(item.ts + item.dur, ready)
        if is_cpu_collective(item):
            start = max(item.ts, ready)
            rp.add(Proto(stream, ready, start, "delay", start - ready, first, name="wait"))
            rp.add(Proto(stream, start, end, "coll_cpu", item.dur, [], item.name, item))
            # this rank's own completion after the shared transfer (kineto.py sets it)
            p = rp.add(Proto(stream, end, end, "coll_tail", 0.0, [], item.name + " (done)", item))
        else:
            at = ready
            for cut, c in sorted(cuts.get(id(item), ()), key=lambda x: x[0]):
                cut = max(cut, at)
                keys[("cut", id(c))] = rp.add(Proto(stream, at, cut, "delay", cut - at, first,
                                                    item.name))
                at, first = cut, []
            p = rp.add(Proto(stream, at, end, "delay", end - at, first, item.name))
        keys[("end", id(item))] = p
        prev = end


def is_cpu_collective(e: Event) -> bool:
    return e.kind == ANNOTATION and e.name.startswith("gloo:")


def _top_level(evs: list[Event]) -> list[Event]:
    """Outermost ops of one thread (nested ops are inside their parent's time)."""
    out, top_end = [], float("-inf")
    for e in sorted(evs, key=lambda e: (e.ts, -e.dur)):
        if e.ts >= top_end:
            out.append(e)
            top_end = e.ts + e.dur
    return out


def _container(top: list[Event], starts: list[float], e: Event) -> Event:
    i = bisect_right(starts, e.ts) - 1
    return top[max(i, 0)]
