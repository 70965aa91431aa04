"""Execution Trace -> ExecutionGraph, alone (costed by the models) or linked with Kineto.

Nodes are the ops that do work (et_cost.kernels: GEMMs, attention, collectives, leaf
memory-bound ops; composite ops are split into their children). Edges:
- control: program order per ET thread (ids are given at op start, so sorting children by
  id is the order the thread ran them);
- data: an op depends on the last op that wrote each of its input tensors (tensor ids; a
  view's or other work-free op's outputs inherit the writer of its inputs), which is what
  lets a collective on its own stream overlap the compute that does not need its result.

Alone, compute ops of every host thread run on the rank's one device stream ``compute``
with no duration (the cost model prices them) and collectives on ``comm``. Linked with Kineto (``timing``: ET op id -> measured
(start, duration) in us), every node runs on the CPU thread ``cpu:<tid>`` with its measured
duration and the measured gap before it as a Delay, so the host timeline is replayed as
recorded, and the ops keep their FLOPs, bytes and data dependencies.
ProfilerStep ops become step markers (zero-length Delays) around their children.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from workloads.graph import Collective, Delay, ExecutionGraph
from workloads.traces.et import EtFile, EtOp
from workloads.traces.et_cost import kernels, tensors
from workloads.traces.kineto import US, ImportedTrace, Step, kernel_summary

STEP_PREFIX = "ProfilerStep#"


@dataclass
class _RankBuilder:
    graph: ExecutionGraph
    rank: int
    world: int
    timing: dict[int, tuple[float, float]] | None
    t0: float = 0.0
    writer: dict[int, int] = field(default_factory=dict)    # tensor id -> node
    last: dict[str, int] = field(default_factory=dict)      # stream -> last node
    clock: dict[str, float] = field(default_factory=dict)   # linked: stream -> measured end
    seq: Counter = field(default_factory=Counter)
    nodes: int = 0

    def stream(self, op: EtOp, comm: bool) -> str:
        if self.timing is not None:
            return f"cpu:{op.tid}"
        # One device per rank: the ops of all host threads share its compute stream.
        return "comm" if comm else "compute"

    def add_ops(self, op: EtOp) -> None:
        for src, gop, cat in kernels(op, self.world):
            if gop is None:
                self._alias(src)
                continue
            if isinstance(gop, Collective):
                gop = Collective(gop.kind, gop.bytes, gop.group, seq=self.seq["dp"],
                                 name=gop.name)
                self.seq["dp"] += 1
            stream = self.stream(src, isinstance(gop, Collective))
            deps = self._data_deps(src)
            if stream == "comm" and "compute" in self.last:  # issued in program order
                deps.append(self.last["compute"])
            gop = self._timed(src, gop, stream, deps)
            nid = self._add(stream, gop, deps, cat, src)
            if isinstance(gop, Collective) and self.timing is not None:
                # this rank's own completion after the shared transfer (set by formats.py)
                nid = self._add(stream, Delay(0.0, "collective done"), [], cat, None,
                                tail_of=nid)
            for t in tensors(src.outputs):
                self.writer[t.tensor_id] = nid

    def _timed(self, src: EtOp, gop, stream: str, deps: list[int]):
        """Linked mode: the measured duration, and the measured gap before it as a Delay."""
        if self.timing is None:
            return gop
        start, dur = self.timing.get(src.id, (None, 0.0))
        if start is not None:
            gap = start - self.clock.get(stream, self.t0)
            if gap > 0:
                deps.append(self._add(stream, Delay(gap * US, "cpu gap"), [], "other", None))
            self.clock[stream] = max(self.clock.get(stream, self.t0), start + dur)
        return _with_duration(gop, dur * US)

    def _alias(self, src: EtOp) -> None:
        ws = [self.writer[t.tensor_id] for t in tensors(src.inputs) if t.tensor_id in self.writer]
        if ws:
            for t in tensors(src.outputs):
                self.writer[t.tensor_id] = max(ws)

    def _data_deps(self, src: EtOp) -> list[int]:
        return sorted({self.writer[t.tensor_id] for t in tensors(src.inputs)
                       if t.tensor_id in self.writer})

    def _add(self, stream: str, gop, deps: list[int], cat: str, src: EtOp | None,
             **meta) -> int:
        if stream in self.last:
            deps = [self.last[stream], *deps]
        if src is not None:
            meta.update(et_id=src.id, rf_id=src.rf_id)
        nid = self.graph.add(self.rank, stream, gop, sorted(set(deps)), category=cat,
                             name=(src.name if src is not None else gop.name)[:200], **meta)
        self.last[stream] = nid
        self.nodes += 1
        return nid

    def marker(self, name: str, stream: str, at: float | None, deps: list[int]) -> int:
        if at is not None:  # linked: the marker sits at its measured time
            gap = at - self.clock.get(stream, self.t0)
            if gap > 0:
                self._add(stream, Delay(gap * US, "cpu gap"), [], "other", None)
            self.clock[stream] = max(self.clock.get(stream, self.t0), at)
        return self._add(stream, Delay(0.0, name), deps, "other", None)


def build(files: list[tuple[int, EtFile]], world: int,
          timing: dict[int, dict[int, tuple[float, float]]] | None = None,
          t0: float = 0.0, source: str = "et") -> ImportedTrace:
    """Graph of ET files given as (rank, file); ``timing`` per rank links to Kineto."""
    graph = ExecutionGraph(world, simulated_ranks=tuple(r for r, _ in files),
                           meta={"source": source, "files": [str(f.path) for _, f in files]})
    out = ImportedTrace(graph, [], {}, {r: "et" for r, _ in files},
                        files=[str(f.path) for _, f in files])
    for rank, f in files:
        b = _RankBuilder(graph, rank, world, None if timing is None else timing.get(rank, {}), t0)
        for root, inside in _with_step_members(f.roots):
            if root.name.startswith(STEP_PREFIX):
                out.steps.append(_step(b, root, inside))
            else:
                b.add_ops(root)
        if b.timing is not None:
            out.spans[rank] = (max(b.clock.values(), default=t0) - t0) * US
        if b.nodes == 0:
            out.warnings.append(f"rank {rank}: the execution trace holds no ops with work")
    out.steps.sort(key=lambda s: (int(s.name[len(STEP_PREFIX):] or 0)
                                  if s.name[len(STEP_PREFIX):].isdigit() else 0, s.rank))
    if not out.steps:
        out.warnings.append("no ProfilerStep ops: the whole trace is one iteration")
    out.kernels = kernel_summary(graph)
    return out


def _last_id(op: EtOp) -> int:
    while op.children:
        op = op.children[-1]
    return op.id


def _with_step_members(roots: list[EtOp]) -> list[tuple[EtOp, list[EtOp]]]:
    """Roots in id order, each ProfilerStep with the ops it holds: its children and the
    top-level ops of other threads (the autograd thread's backward) that started inside its
    id range."""
    out, i = [], 0
    while i < len(roots):
        root = roots[i]
        i += 1
        if not root.name.startswith(STEP_PREFIX):
            out.append((root, []))
            continue
        end, extra = _last_id(root), []
        while i < len(roots) and roots[i].id <= end and not roots[i].name.startswith(STEP_PREFIX):
            extra.append(roots[i])
            i += 1
        out.append((root, sorted(root.children + extra, key=lambda o: o.id)))
    return out


def _step(b: _RankBuilder, root: EtOp, inside: list[EtOp]) -> Step:
    stream = b.stream(root, False)
    timed = b.timing.get(root.id) if b.timing is not None else None
    start = b.marker(root.name, stream, timed[0] if timed else None, [])
    for child in inside:
        b.add_ops(child)
    ends = [n for s, n in b.last.items() if n > start]
    end_at = timed[0] + timed[1] if timed else None
    end = b.marker(root.name, stream, end_at, ends)
    measured = timed[1] * US if timed else float("nan")
    return Step(b.rank, root.name, start, end, measured)


def _with_duration(gop, dur_s: float):
    kw = {f: getattr(gop, f) for f in gop.__slots__}
    kw["duration_s"] = dur_s
    return type(gop)(**kw)
