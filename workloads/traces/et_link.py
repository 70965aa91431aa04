"""Link a PyTorch Execution Trace with the Kineto trace of the same run.

Both traces see the same record-function callbacks: the ET writes the callback's id as
``rf_id``, Kineto writes it on CPU ops and user annotations as ``Record function id``
(torch >= 2.1); older Kineto traces only have ``External id``, which then counts the same
callbacks. An ET op is joined to the Kineto op with the same id *and* the same name (the
name check rejects a stale pairing, e.g. of two different runs). Where ids join too few
ops (under half), ops are paired by name in order of occurrence instead, the way
Chakra's trace linker falls back on older traces. The join gives every linked ET op its
measured start and duration; et_graph then replays the host timeline with the ET's
data dependencies and work attached.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import ijson

from hw_models.errors import ClusterSimError
from workloads.traces.et import PROCESS_NODE, THREAD_NODE, EtFile
from workloads.traces.events import open_text

_BACKEND = re.compile(r"^(gloo|nccl):")
_CPU_CATS = ("cpu_op", "user_annotation", "operator")
MIN_LINK_FRACTION = 0.5


@dataclass(frozen=True, slots=True)
class CpuOp:
    name: str
    ts: float
    dur: float
    rf_id: int          # Record function id, else External id, else -1


@dataclass
class Link:
    timing: dict[int, tuple[float, float]]   # ET op id -> (start us, duration us)
    t0: float                                 # first event of the Kineto trace (us)
    linked: int
    total: int
    method: str


def cpu_ops(path: Path) -> tuple[list[CpuOp], float]:
    """CPU ops and annotations of a Kineto trace, and the trace's earliest timestamp."""
    ops, t0 = [], float("inf")
    with open_text(path) as f:
        try:
            for ev in ijson.items(f, "traceEvents.item", use_float=True):
                if not isinstance(ev, dict) or ev.get("ph") != "X":
                    continue
                ts, dur = ev.get("ts"), ev.get("dur", 0.0)
                if not isinstance(ts, int | float) or not isinstance(dur, int | float):
                    continue
                t0 = min(t0, float(ts))
                if str(ev.get("cat", "")).lower() in _CPU_CATS:
                    args = ev.get("args") if isinstance(ev.get("args"), dict) else {}
                    key = args.get("Record function id", args.get("External id", -1))
                    ops.append(CpuOp(str(ev.get("name", "")), float(ts), max(0.0, float(dur)),
                                     key if isinstance(key, int) else -1))
        except (ijson.JSONError, ijson.IncompleteJSONError) as exc:
            raise ClusterSimError(f"trace {path.name}: not valid JSON (truncated or corrupt?): "
                                  f"{exc}") from None
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise ClusterSimError(f"trace {path.name}: cannot read ({exc})") from None
    if not ops:
        raise ClusterSimError(f"trace {path.name}: no CPU ops to link with the execution trace; "
                              "is this the Kineto trace of the same run?")
    return ops, t0


def link(et: EtFile, kineto_path: Path) -> Link:
    ops, t0 = cpu_ops(kineto_path)
    ets = [o for o in sorted(et.ops.values(), key=lambda o: o.id)
           if o.name not in (PROCESS_NODE, THREAD_NODE)]
    by_key: dict[int, CpuOp] = {}
    for op in ops:
        if op.rf_id >= 0:
            by_key.setdefault(op.rf_id, op)
    timing = {o.id: (k.ts, k.dur) for o in ets
              if (k := by_key.get(o.rf_id)) is not None and k.name == o.name}
    method = "record function id"
    if len(timing) < MIN_LINK_FRACTION * len(ets):
        timing, method = _by_name_order(ets, ops), "name order"
    if not timing:
        raise ClusterSimError(f"execution trace {et.path.name} and Kineto trace "
                              f"{kineto_path.name} share no ops; are they from the same run?")
    _until_backend_done(ets, timing)
    return Link(timing, t0, len(timing), len(ets), method)


def _until_backend_done(ets, timing: dict[int, tuple[float, float]]) -> None:
    """A c10d collective returns once its work is queued; the backend's record of the
    transfer (``gloo:all_reduce`` on a worker thread, ``nccl:*``) is the next such op in id
    order, and a synchronous call waits for it. The collective's measured span is therefore
    from the c10d call to the end of that transfer, so the engine's rendezvous sees when the
    data arrived rather than when the call returned."""
    pending: list[int] = []
    for o in ets:
        if o.name.startswith("c10d::") and o.id in timing:
            pending.append(o.id)
        elif _BACKEND.match(o.name) and pending and o.id in timing:
            c = pending.pop(0)
            start, dur = timing[c]
            ts, d = timing[o.id]
            timing[c] = (start, max(dur, ts + d - start))


def _by_name_order(ets, ops: list[CpuOp]) -> dict[int, tuple[float, float]]:
    """The n-th ET op of a name pairs with the n-th Kineto op of that name (both in start
    order)."""
    queues: dict[str, list[CpuOp]] = defaultdict(list)
    for op in sorted(ops, key=lambda o: o.ts):
        queues[op.name].append(op)
    used: dict[str, int] = defaultdict(int)
    out = {}
    for o in ets:
        q = queues.get(o.name)
        if q and used[o.name] < len(q):
            k = q[used[o.name]]
            used[o.name] += 1
            out[o.id] = (k.ts, k.dur)
    return out
