"""SimResult: metrics, breakdown, memory and the timeline, with exports.

The breakdown is taken on the critical rank (the one that finishes last) and sums to
the iteration time: compute, TP/CP/EP communication inside its blocks (on the critical
path), the GPU's wait for the host's kernel launches inside them (host), and the idle time of its compute stream split by what it waited for: a pipeline
transfer in flight (pp), the pipeline's other stages (bubble), DP gradient reduction
and parameter gathering (dp).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hw_models.jsonio import dumps
from sim.engine import Row
from workloads.graph import ExecutionGraph

if TYPE_CHECKING:
    import pandas as pd

CATEGORIES = ("compute", "tp", "cp", "ep", "pp", "dp", "host", "bubble", "other")


class Columns:
    """What a DataFrame is built from (``pd.DataFrame(data)``: a mapping of columns or a
    list of records), built only when read. The CLI prints a result without its tables,
    and pandas takes ~0.4 s to import: a simulate command should not pay for it."""
    __slots__ = ("data",)

    def __init__(self, data: dict[str, Any] | list[dict[str, Any]]):
        self.data = data

    def frame(self) -> pd.DataFrame:
        import pandas as pd
        return pd.DataFrame(self.data)


class FrameField:
    """A dataclass field holding a DataFrame, which may be set to ``Columns``: the frame
    is built on the first read and kept."""

    def __init__(self, required: bool = True):
        self.required = required

    def __set_name__(self, owner, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj, objtype=None):
        if obj is None:                 # the dataclass asks for a default
            if self.required:
                raise AttributeError(self.slot)
            return None
        value = obj.__dict__[self.slot]
        if isinstance(value, Columns):
            value = obj.__dict__[self.slot] = value.frame()
        return value

    def __set__(self, obj, value) -> None:
        obj.__dict__[self.slot] = value


@dataclass
class SimResult:
    name: str
    fidelity: str
    iteration_time_s: float
    tokens_per_s: float
    tflops_per_gpu: float
    mfu: float
    hfu: float
    memory_peak_gib: float
    breakdown: dict[str, float]
    memory: pd.DataFrame = FrameField()            # one row per pipeline stage
    timeline: pd.DataFrame = FrameField()          # one row per played node
    world_size: int
    events: int = 0
    wall_s: float = 0.0
    band: dict[str, tuple[float, float]] | None = None   # low/high from profile uncertainty
    extra: dict[str, Any] = field(default_factory=dict)
    power: pd.DataFrame | None = FrameField(required=False)  # rank, t_s, watts per simulated rank (sim/energy.py)

    def memory_records(self) -> list[dict[str, Any]]:
        """The memory table as records (one dict per stage), without building the frame."""
        raw = self.__dict__["_memory"]
        if not isinstance(raw, Columns) or not isinstance(raw.data, list):
            return self.memory.to_dict("records")
        return [{k: v.item() if hasattr(v, "item") else v for k, v in r.items()}
                for r in raw.data]

    def summary(self) -> dict[str, Any]:
        out = {"name": self.name, "iteration_time_s": self.iteration_time_s,
               "tokens_per_s": self.tokens_per_s, "tflops_per_gpu": self.tflops_per_gpu,
               "mfu": self.mfu, "hfu": self.hfu, "memory_peak_gib": self.memory_peak_gib,
               "breakdown": self.breakdown, "fidelity": self.fidelity,
               "world_size": self.world_size, "memory_per_stage": self.memory_records()}
        if self.band:
            out["band"] = {k: list(v) for k, v in self.band.items()}
        return out | self.extra

    def to_chrome_trace(self, path: str | Path | None = None) -> dict[str, Any]:
        """Chrome/Perfetto trace: pid = rank, tid = stream, one "X" event per node (us),
        and a "power" counter track (watts) per rank."""
        events = [{"name": r.name, "cat": r.category, "ph": "X", "pid": int(r.rank),
                   "tid": r.stream, "ts": r.start * 1e6, "dur": (r.end - r.start) * 1e6}
                  for r in self.timeline.itertuples() if r.end > r.start]
        events += [{"name": "process_name", "ph": "M", "pid": int(rank),
                    "args": {"name": f"rank {rank}"}} for rank in self.timeline["rank"].unique()]
        from sim.energy import power_counter_events
        events += power_counter_events(self.power)   # "ph": "C" board power per rank
        trace = {"traceEvents": events, "displayTimeUnit": "ms",
                 "otherData": {"scenario": self.name, "fidelity": self.fidelity}}
        if path is not None:
            Path(path).write_text(dumps(trace))
        return trace


def timeline_frame(rows: list[Row]) -> Columns:
    """The timeline's columns (a DataFrame once read from a SimResult)."""
    return Columns({
        "id": [r.id for r in rows], "rank": [r.rank for r in rows],
        "stream": [r.stream for r in rows], "name": [r.name for r in rows],
        "category": [r.category for r in rows], "ready": [r.ready for r in rows],
        "start": [r.start for r in rows], "end": [r.end for r in rows]})


def breakdown(rows: list[Row], graph: ExecutionGraph) -> dict[str, float]:
    """Critical-rank breakdown that sums to the iteration time (see module doc)."""
    total = max(r.end for r in rows)
    crit = max(rows, key=lambda r: r.end).rank
    by_id = {r.id: r for r in rows}
    out = dict.fromkeys(CATEGORIES, 0.0)
    compute = sorted((r for r in rows if r.rank == crit and r.stream == "compute"),
                     key=lambda r: r.start)
    prev_end = 0.0
    for r in compute:
        _attribute_gap(out, prev_end, r.start, graph.nodes[r.id].deps, by_id)
        if r.parts:
            for k, v in r.parts.items():
                out[k] = out.get(k, 0.0) + v
        else:
            out[r.category] = out.get(r.category, 0.0) + (r.end - r.start)
        prev_end = r.end
    tail_wait = [r.id for r in rows if r.rank == crit and r.end > prev_end]
    _attribute_gap(out, prev_end, total, tuple(tail_wait), by_id)
    return {k: v for k, v in out.items() if v > 0 or k in ("compute", "bubble")}


def _attribute_gap(out: dict, start: float, end: float, deps, by_id: dict) -> None:
    gap = end - start
    if gap <= 1e-15:
        return
    waits = [by_id[d] for d in deps if d in by_id and by_id[d].end > start]
    if not waits:
        out["bubble"] += gap
        return
    last = max(waits, key=lambda r: r.end)
    if last.category == "pp":
        # The transfer itself is exposed pp time; waiting for it to begin is bubble.
        transfer = max(0.0, min(end, last.end) - max(start, last.start))
        out["pp"] += transfer
        out["bubble"] += gap - transfer
    elif last.category == "compute":
        out["bubble"] += gap
    else:
        out[last.category] = out.get(last.category, 0.0) + gap
