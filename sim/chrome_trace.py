"""Export of engine rows (a replay of any ExecutionGraph) as Chrome/Perfetto trace JSON.

``pid`` is the rank, ``tid`` the stream (a CPU thread ``cpu:...`` or a GPU stream
``gpu...``), ``ts``/``dur`` in microseconds, ``ph: "X"`` complete events. Written one
event at a time so a replay of a large trace does not build the whole JSON in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hw_models.jsonio import dumps
from sim.engine import Row

US_PER_S = 1e6


def write(rows: Iterable[Row], path: str | Path, skip_delays: bool = True) -> int:
    """Write rows to ``path``; CPU gaps (zero-work Delay rows named by their call) are kept,
    GPU idle fillers are skipped. Returns the number of events written."""
    n = 0
    with open(path, "w") as f:
        f.write('{"displayTimeUnit": "ms", "traceEvents": [\n')
        for r in rows:
            if skip_delays and r.name in ("gpu idle", "handoff", "wait"):
                continue
            ev = {"ph": "X", "name": r.name, "cat": r.category, "pid": r.rank, "tid": r.stream,
                  "ts": r.start * US_PER_S, "dur": (r.end - r.start) * US_PER_S,
                  "args": {"node": r.id, "ready_us": r.ready * US_PER_S}}
            f.write((",\n" if n else "") + dumps(ev))
            n += 1
        f.write("\n]}\n")
    return n
