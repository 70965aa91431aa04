"""PyTorch profiler (Kineto) traces -> ExecutionGraph with measured durations.

One file per rank, or a folder of rank files. Ranks come from ``distributedInfo.rank``
(file order where absent). All ranks share one time origin (the earliest event of the
run), so a rank that started late waits in the replay as it did in the run.

NCCL kernels (and ``gloo:*`` collectives of CPU runs) become Collective nodes matched
across ranks by (process group, sequence number in that group). Where every member of
the group is loaded (all ranks share one clock), a collective cannot complete before its
last member arrives (the latest measured start), and each rank's own end is when it saw
it complete: the shared transfer runs from the last arrival to the first measured end,
and each rank's later end is a Delay after it on its own stream (``collective_timing``).
The engine's rendezvous supplies each rank's wait for the last arrival. Where only some
members are loaded, each keeps its own measured time (which includes its wait).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hw_models.errors import ClusterSimError
from workloads.graph import Collective, CommGroup, Compute, Delay, ExecutionGraph, Memory
from workloads.traces import deps as D
from workloads.traces.classify import classify, collective_kind
from workloads.traces.events import KERNEL, MEMCPY, MEMSET, Event, iter_events, read_header
from workloads.traces.shapes import launch_ops, share_group, work_of

US = 1e-6
# Bytes per element of the dtypes c10d records (``dtype`` argument of NCCL kernels).
DTYPE_BYTES = {"float": 4, "half": 2, "bfloat16": 2, "double": 8, "int": 4, "long": 8,
               "byte": 1, "char": 1, "bool": 1, "short": 2, "float8_e4m3fn": 1,
               "float8_e5m2": 1, "int32": 4, "int64": 8, "float32": 4, "float16": 2}


@dataclass(frozen=True)
class Step:
    rank: int
    name: str
    start_node: int
    end_node: int
    measured_s: float


@dataclass
class ImportedTrace:
    graph: ExecutionGraph
    steps: list[Step]
    spans: dict[int, float]                   # rank -> measured span of the whole trace (s)
    devices: dict[int, str]
    warnings: list[str] = field(default_factory=list)
    kernels: dict[str, dict] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    measured: bool = True                     # False: no recorded times (ET alone, Chakra)
    link: dict = field(default_factory=dict)  # ET <-> Kineto link statistics
    step_basis: str = "cpu"                   # "gpu": steps are spans of GPU work (deps.py)
    before_trace: dict[int, int] = field(default_factory=dict)  # rank -> ops launched earlier
    device_memory_gb: dict[int, float] = field(default_factory=dict)  # rank -> deviceProperties
    device_units: dict[int, int] = field(default_factory=dict)   # rank -> numSms (SMs / CUs)


@dataclass
class _RankFile:
    rank: int
    path: Path
    events: list[Event]
    dist: dict
    device: str
    memory_gb: float | None = None      # deviceProperties totalGlobalMem, when recorded
    units: int | None = None            # deviceProperties numSms (SMs, or CUs on ROCm)


def trace_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith((".json", ".json.gz")))
        if not files:
            raise ClusterSimError(f"folder {str(path)!r} holds no .json or .json.gz traces")
        return files
    if not path.exists():
        raise ClusterSimError(f"trace {str(path)!r} does not exist")
    return [path]


def load(path: str | Path) -> ImportedTrace:
    """Import a Kineto trace file or a folder of per-rank files."""
    return load_files(trace_files(Path(path)))


def load_files(files: list[Path]) -> ImportedTrace:
    """Import Kineto trace files, one per rank."""
    ranks = _read_ranks(files)
    world = max([r.dist.get("world_size", 0) for r in ranks if isinstance(
        r.dist.get("world_size", 0), int)] + [max(r.rank for r in ranks) + 1, len(ranks)])
    graph = ExecutionGraph(world, simulated_ranks=tuple(r.rank for r in ranks),
                           meta={"source": "kineto", "files": [str(r.path) for r in ranks]})
    out = ImportedTrace(graph, [], {}, {r.rank: r.device for r in ranks},
                        files=[str(r.path) for r in ranks],
                        device_memory_gb={r.rank: r.memory_gb for r in ranks if r.memory_gb},
                        device_units={r.rank: r.units for r in ranks if r.units})
    t0 = min((e.ts for r in ranks for e in r.events), default=0.0)
    table = _collective_table(ranks, world)
    unknown: Counter = Counter()
    for r in ranks:
        rp = D.build_rank(r.events, t0)
        ops = _OpMaker(r, table, world, unknown)
        node_of = _emit(graph, r.rank, rp, ops)
        out.spans[r.rank] = (rp.t_end - t0) * US
        for name, (p0, p1, us) in rp.markers.items():
            if p0 >= 0 and p1 >= 0:
                out.steps.append(Step(r.rank, name, node_of[p0], node_of[p1], us * US))
        if rp.step_basis == "gpu":
            out.step_basis = "gpu"
        if rp.before_trace:  # the warmup step's tail: launched before recording began
            out.before_trace[r.rank] = rp.before_trace
        if rp.missing_corr:
            out.warnings.append(f"rank {r.rank}: {rp.missing_corr} GPU ops have no launch with a "
                                "matching correlation id; they keep their measured start gaps")
        r.events = []  # free the events of this rank before the next one
    out.steps.sort(key=lambda s: (_step_no(s.name), s.rank))
    if not out.steps:
        out.warnings.append("no ProfilerStep annotations: the whole trace is one iteration")
    out.kernels = kernel_summary(graph)
    if unknown:
        top = ", ".join(n[:60] for n, _ in unknown.most_common(3))
        out.warnings.append(f"{sum(unknown.values())} kernels of unknown class (kept as 'other', "
                            f"re-costed as memory-bound), e.g. {top}")
    return out


def _step_no(name: str) -> int:
    m = re.search(r"#(\d+)", name)
    return int(m.group(1)) if m else 0


def _read_ranks(files: list[Path]) -> list[_RankFile]:
    ranks: list[_RankFile] = []
    for i, f in enumerate(files):
        header = read_header(f)
        dist = header.distributed if isinstance(header.distributed, dict) else {}
        rank = dist.get("rank", i)
        rank = rank if isinstance(rank, int) and rank >= 0 else i
        if any(r.rank == rank for r in ranks):
            raise ClusterSimError(f"two trace files claim rank {rank}: {f.name} and "
                                  f"{next(r.path.name for r in ranks if r.rank == rank)}")
        devices = header.devices if isinstance(header.devices, list) else []
        first = devices[0] if devices and isinstance(devices[0], dict) else None
        device = str(first.get("name", "")) if first else "cpu"
        mem = first.get("totalGlobalMem") if first else None
        mem_gb = mem / 1e9 if isinstance(mem, int | float) and mem > 0 else None
        units = first.get("numSms") if first else None
        units = units if isinstance(units, int) and not isinstance(units, bool) and units > 0 \
            else None
        ranks.append(_RankFile(rank, f, list(iter_events(f)), dist, device, mem_gb, units))
    return sorted(ranks, key=lambda r: r.rank)


def _group(ev: Event, dist: dict, world: int) -> tuple[str, tuple[int, ...]]:
    extra = ev.extra or {}
    pg = str(extra.get("Process Group Name", "0"))
    ranks = extra.get("Process Group Ranks")
    if isinstance(ranks, str):
        try:
            ranks = json.loads(ranks)
        except json.JSONDecodeError:
            ranks = None
    if not (isinstance(ranks, list) and ranks and all(isinstance(x, int) for x in ranks)):
        cfg = [c for c in dist.get("pg_config", []) if isinstance(c, dict)
               and str(c.get("pg_name")) == pg] if isinstance(dist.get("pg_config"), list) else []
        ranks = cfg[0].get("ranks") if cfg and isinstance(cfg[0].get("ranks"), list) else None
    if not ranks:
        ranks = list(range(world))
    return pg, tuple(sorted(set(int(x) for x in ranks)))


def _is_collective(ev: Event) -> bool:
    if ev.kind == KERNEL:
        return classify(ev.name) == "nccl"
    return D.is_cpu_collective(ev)


def _collective_table(ranks: list[_RankFile], world: int) -> dict:
    """(pg, seq) -> {rank: measured (start, end) us} over the loaded ranks."""
    table: dict[tuple[str, int], dict[int, tuple[float, float]]] = {}
    for r in ranks:
        seq: Counter = Counter()
        for ev in sorted((e for e in r.events if _is_collective(e)), key=lambda e: e.ts):
            pg, _ = _group(ev, r.dist, world)
            table.setdefault((pg, seq[pg]), {})[r.rank] = (ev.ts, ev.ts + ev.dur)
            seq[pg] += 1
    return table


def collective_timing(spans: dict[int, tuple[float, float]]) -> tuple[float, dict[int, float]]:
    """Shared duration and per-rank completion delay of one collective measured on every
    member as (start, end) on one clock. It cannot complete before the last member arrives
    (latest start); the first member to see it complete bounds the shared transfer; a
    member that saw it later (a descheduled gloo worker, a late poll) keeps the difference
    as its own time. Replayed from the same arrivals, every member ends at its measured end."""
    last_in = max(s for s, _ in spans.values())
    done = max(last_in, min(e for _, e in spans.values()))
    return done - last_in, {r: max(0.0, e - done) for r, (_, e) in spans.items()}


class _OpMaker:
    """Turns proto-nodes of one rank into graph ops (collective sequence numbers counted here)."""

    def __init__(self, r: _RankFile, table: dict, world: int, unknown: Counter):
        self.r, self.table, self.world, self.unknown = r, table, world, unknown
        self.launched_by = launch_ops(r.events)   # corr -> shaped CPU op (traces/shapes.py)
        self.seq: Counter = Counter()
        self.tail: dict[int, float] = {}   # id(collective event) -> own completion delay (us)

    def __call__(self, p: D.Proto):
        if p.kind in ("delay", "marker"):
            return Delay(p.dur_us * US, p.name), "other"
        if p.kind == "coll_tail":
            return Delay(self.tail.pop(id(p.event), 0.0) * US, p.name), "dp"
        ev = p.event
        if _is_collective(ev):
            return self._collective(ev), "dp"
        if ev.kind == MEMCPY:
            nbytes = float((ev.extra or {}).get("bytes", 0) or 0)
            if "HtoD" in ev.name or "DtoH" in ev.name:
                kind = "h2d" if "HtoD" in ev.name else "d2h"
                return Memory(kind, nbytes, ev.dur * US, ev.name), "memory"
            # A device-to-device copy of N bytes reads N and writes N bytes of HBM (STREAM's
            # convention for copy bandwidth, which the profiles' bw_eff is fitted on).
            return Compute("memcpy", bytes=2 * nbytes, duration_s=ev.dur * US,
                           name=ev.name), "memory"
        if ev.kind == MEMSET:   # writes its N bytes once
            nbytes = float((ev.extra or {}).get("bytes", 0) or 0)
            return Compute("memcpy", bytes=nbytes, duration_s=ev.dur * US, name=ev.name), "memory"
        cls = classify(ev.name)
        if cls == "other":
            self.unknown[ev.name] += 1
        op_class = "elementwise" if cls == "elementwise" else cls
        src = self.launched_by.get(ev.corr)
        work = work_of(*src) if src else None
        if work is not None and share_group(ev.name) == (
                "gemm" if work.op_class == "gemm" else "memory"):
            return Compute(work.op_class, work.flops, work.bytes, work.dtype,
                           duration_s=ev.dur * US, name=ev.name), "compute"
        return Compute(op_class, duration_s=ev.dur * US, name=ev.name), "compute"

    def _collective(self, ev: Event) -> Collective:
        pg, ranks = _group(ev, self.r.dist, self.world)
        seq = self.seq[pg]
        self.seq[pg] += 1
        extra = ev.extra or {}
        kind = collective_kind(str(extra.get("Collective name", ""))) or collective_kind(
            ev.name.split(":")[-1]) or "all_reduce"
        nelems = max(_num(extra.get("In msg nelems")), _num(extra.get("Out msg nelems")))
        nbytes = nelems * DTYPE_BYTES.get(str(extra.get("dtype", "")).lower(), 0)
        measured = self.table.get((pg, seq), {})
        dur = ev.dur
        if measured and all(x in measured for x in ranks):
            dur, tails = collective_timing(measured)
            self.tail[id(ev)] = tails.get(self.r.rank, 0.0)
        return Collective(kind, float(nbytes), CommGroup(ranks, "dp"), seq=seq,
                          duration_s=dur * US, name=ev.name)


def _num(x: object) -> float:
    return float(x) if isinstance(x, int | float) else 0.0


def _emit(graph: ExecutionGraph, rank: int, rp: D.RankProtos, make_op) -> list[int]:
    """Add proto-nodes in an order where every dependency and stream predecessor comes first
    (Kahn's algorithm over measured start times)."""
    protos = rp.protos
    pred, last = [-1] * len(protos), {}
    for i, p in enumerate(protos):
        pred[i] = last.get(p.stream, -1)
        last[p.stream] = i
    node_of = [-1] * len(protos)
    waiting: dict[int, list[int]] = {}
    for i in sorted(range(len(protos)), key=lambda i: (protos[i].start, protos[i].end, i)):
        stack = [i]
        while stack:
            j = stack.pop()
            if node_of[j] >= 0:
                continue
            blocker = next((d for d in [pred[j], *protos[j].deps] if d >= 0 and node_of[d] < 0),
                           None)
            if blocker is not None:
                waiting.setdefault(blocker, []).append(j)
                continue
            op, cat = make_op(protos[j])
            node_of[j] = graph.add(rank, protos[j].stream, op,
                                   [node_of[d] for d in protos[j].deps], category=cat,
                                   name=protos[j].name[:200])
            stack.extend(waiting.pop(j, ()))
    if any(n < 0 for n in node_of):
        stuck = sum(1 for n in node_of if n < 0)
        raise ClusterSimError(f"rank {rank}: {stuck} trace events form a dependency cycle "
                              "(inconsistent timestamps?)")
    return node_of


def kernel_summary(graph: ExecutionGraph) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for n in graph.nodes:
        op = n.op
        cls = kernel_class(op)
        if cls is None:
            continue
        row = out.setdefault(cls, {"count": 0, "measured_s": 0.0})
        row["count"] += 1
        row["measured_s"] += op.duration_s or 0.0
    return out


def kernel_class(op) -> str | None:
    """Replay class of a graph op: gemm|attention|nccl|elementwise|memcpy|other, None for CPU."""
    if isinstance(op, Collective):
        return "nccl"
    if isinstance(op, Memory):
        return "memcpy"
    if isinstance(op, Compute):
        return op.op_class if op.op_class in ("gemm", "attention", "elementwise", "memcpy") \
            else "other"
    return None
