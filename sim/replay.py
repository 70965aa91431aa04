"""Replay an imported trace on the engine, as measured and under a what-if.

``replay(trace, whatif)`` runs the ExecutionGraph twice through sim.engine.Engine: once
with the recorded durations (which must reproduce the measured iteration time: the check
that the dependencies were rebuilt right) and once with kernels and collectives re-costed
by sim.whatif.Recoster. CPU time (Delay nodes) is kept as measured in both.

Iteration time: the ProfilerStep annotations' durations, as HTA and the profiler define it
(for several ranks, the slowest rank per step), averaged over the steps; a trace without
them is one iteration from its first to its last event. Where the GPU runs behind the CPU
(GPU-paced, see workloads/traces/deps.py ``_gpu_steps``) a step is the span of its GPU
work (Kineto's ``gpu_user_annotation`` copy of the step), from its first op's start to its
last op's end.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np
import simpy

from hw_models.errors import ClusterSimError
from sim.engine import Engine, Row
from sim.whatif import Recoster, WhatIf
from workloads.graph import Collective, Compute, Delay, Memory, Node
from workloads.traces.classify import CLASSES
from workloads.traces.deps import BUSY_PACED, union_intervals
from workloads.traces.kineto import ImportedTrace, kernel_class


def host(node: Node) -> bool:
    """Host (CPU thread) time: replayed as measured, never re-costed for a GPU."""
    return node.stream.startswith("cpu:")


def priced(node: Node) -> bool:
    """A device op the models can price from its work alone (``--durations model``):
    a kernel with FLOPs or bytes from its shapes, a collective with its message size."""
    op = node.op
    if host(node):
        return False
    if isinstance(op, Compute):
        return op.flops > 0 or op.bytes > 0
    return isinstance(op, Collective) and op.bytes > 0


class ReplayCosts:
    """CostModel of the engine: recorded durations, optionally re-costed; ops with no
    recorded duration (Execution Trace alone, Chakra) are priced by the compute model of the
    source system, or of the target in the what-if run. ``model``: every op the models can
    price (``priced``) is priced so, its recorded duration ignored."""

    def __init__(self, recoster: Recoster | None, pricer: Recoster | None = None,
                 model: bool = False):
        self.r = recoster
        self.pricer = pricer or recoster
        self.model = model

    def duration(self, node: Node) -> float:
        op = node.op
        if isinstance(op, Delay):
            return op.duration_s
        dur = getattr(op, "duration_s", None)
        if isinstance(op, Compute) and self.pricer is not None and (
                dur is None or (self.model and priced(node))):
            return self.pricer.price_compute(op, target=self.r is not None)
        dur = dur or 0.0
        if self.r is None or isinstance(op, Memory) or host(node):  # host: as measured
            return dur
        if isinstance(op, Compute):
            return self.r.compute(kernel_class(op), dur)
        return dur

    def parts(self, node: Node) -> dict[str, float]:
        return {}


class ReplayNetwork:
    """Network of the engine: a collective holds for its recorded (or re-costed) time."""

    def __init__(self, recoster: Recoster | None, pricer: Recoster | None = None,
                 model: bool = False):
        self.r = recoster
        self.pricer = pricer or recoster
        self.model = model

    def collective(self, env: simpy.Environment, op: Collective) -> Generator:
        if self.pricer is not None and (op.duration_s is None or (self.model and op.bytes > 0)):
            yield env.timeout(self.pricer.price_collective(op, target=self.r is not None))
            return
        dur = op.duration_s or 0.0
        yield env.timeout(self.r.collective(op, dur) if self.r else dur)

    def p2p(self, env: simpy.Environment, src: int, dst: int, nbytes: float) -> Generator:
        yield env.timeout(0.0)


@dataclass
class RunStats:
    iteration_s: float
    per_rank: dict[int, float]
    breakdown: dict[str, float]
    kernels: dict[str, float] = field(default_factory=dict)   # class -> busy s per iteration
    rows: list[Row] | None = None


@dataclass
class ReplayResult:
    measured_iteration_s: float | None     # None: the trace recorded no times
    measured_per_rank: dict[int, float]
    replayed: RunStats
    whatif: RunStats
    steps: list[dict]

    @property
    def replay_error(self) -> float | None:
        if not self.measured_iteration_s:
            return None
        return self.replayed.iteration_s / self.measured_iteration_s - 1.0

    @property
    def device_busy_fraction(self) -> float:
        """Share of the replayed iteration the device (kernels, collectives) was busy."""
        b = self.replayed.breakdown
        it = self.replayed.iteration_s
        return max(0.0, 1.0 - b.get("gpu_idle_s", 0.0) / it) if it > 0 else 0.0

    @property
    def cpu_bound(self) -> bool:
        """The iteration is paced by the host: the device idles more than it works, so a
        faster GPU or fabric moves kernel time but hardly the step time."""
        return self.device_busy_fraction < CPU_BOUND_BUSY


    @property
    def whatif_unmoved(self) -> bool:
        """The what-if moved the device's busy time but not the iteration: something it does
        not re-cost (host time, waits replayed as measured) paces the step."""
        busy_r = sum(self.replayed.kernels.values())
        busy_w = sum(self.whatif.kernels.values())
        it_r, it_w = self.replayed.iteration_s, self.whatif.iteration_s
        return busy_r > 0 and abs(busy_w - busy_r) > MOVED_BUSY * busy_r \
            and abs(it_w - it_r) < UNMOVED_STEP * it_r


# Reporting thresholds of ``whatif_unmoved``: busy time moved by more than 5% while the
# iteration moved by less than 1% (a what-if visible in the kernels, invisible in the step).
MOVED_BUSY, UNMOVED_STEP = 0.05, 0.01
# Below this device-busy share of the iteration a trace counts as CPU-paced (more idle
# than busy: the definition HTA's temporal breakdown uses to call a run launch/CPU-bound);
# the importer uses the same share to measure GPU-paced steps on the GPU.
CPU_BOUND_BUSY = BUSY_PACED


def replay(trace: ImportedTrace, whatif: WhatIf | None = None, keep_rows: bool = False,
           durations: str = "measured") -> ReplayResult:
    """``durations``: "measured" replays the recorded kernel and collective times;
    "model" prices every op it can from its work (``priced``) with the compute and
    collective models of the source system, the rest as recorded (``model_coverage``)."""
    if durations not in ("measured", "model"):
        raise ClusterSimError(f"durations {durations!r}; allowed: measured, model")
    graph = trace.graph
    model = durations == "model"
    rec = Recoster(whatif or WhatIf(), graph.world_size)
    has_times = trace.measured and bool(trace.steps or trace.spans)
    measured, measured_rank = _measured(trace) if has_times else (None, {})
    base = _run(trace, None, keep_rows=False, pricer=rec, model=model)
    what = base if rec.identity and not keep_rows else _run(trace, rec, keep_rows, model=model)
    steps = _per_step(trace, base.rows_end, what.rows_end) if trace.steps else []
    return ReplayResult(measured, measured_rank, base.stats, what.stats, steps)


@dataclass
class _Run:
    stats: RunStats
    rows_end: np.ndarray


def _run(trace: ImportedTrace, rec: Recoster | None, keep_rows: bool,
         pricer: Recoster | None = None, model: bool = False) -> _Run:
    graph = trace.graph
    rows = Engine(graph, ReplayCosts(rec, pricer, model), ReplayNetwork(rec, pricer, model)).run()
    n = len(graph)
    start, end = np.zeros(n), np.zeros(n)
    for r in rows:
        start[r.id], end[r.id] = r.start, r.end
    per_rank, windows = _iterations(trace, end)
    it = _step_mean(trace, end) if trace.steps else max(per_rank.values())
    breakdown, kernels = _breakdown(graph.nodes, start, end, windows)
    stats = RunStats(it, per_rank, breakdown, kernels, rows if keep_rows else None)
    return _Run(stats, end)


def _measured(trace: ImportedTrace) -> tuple[float, dict[int, float]]:
    if not trace.steps:
        return max(trace.spans.values()), dict(trace.spans)
    by_name: dict[str, float] = {}
    per_rank: dict[int, list[float]] = {}
    for s in trace.steps:
        by_name[s.name] = max(by_name.get(s.name, 0.0), s.measured_s)
        per_rank.setdefault(s.rank, []).append(s.measured_s)
    return float(np.mean(list(by_name.values()))), {r: float(np.mean(v)) for r, v in
                                                       per_rank.items()}


def _step_mean(trace: ImportedTrace, end: np.ndarray) -> float:
    by_name: dict[str, float] = {}
    for s in trace.steps:
        by_name[s.name] = max(by_name.get(s.name, 0.0), end[s.end_node] - end[s.start_node])
    return float(np.mean(list(by_name.values())))


def _iterations(trace: ImportedTrace, end: np.ndarray):
    """Per-rank mean iteration time and the (start, end, n_steps) window of each rank."""
    per_rank, windows = {}, {}
    if trace.steps:
        for rank in {s.rank for s in trace.steps}:
            mine = [s for s in trace.steps if s.rank == rank]
            per_rank[rank] = float(np.mean([end[s.end_node] - end[s.start_node] for s in mine]))
            windows[rank] = (min(end[s.start_node] for s in mine),
                             max(end[s.end_node] for s in mine), len(mine))
        return per_rank, windows
    for n in trace.graph.nodes:
        per_rank[n.rank] = max(per_rank.get(n.rank, 0.0), end[n.id])
    return per_rank, {r: (0.0, t, 1) for r, t in per_rank.items()}


def _length(iv) -> float:
    return sum(b - a for a, b in iv)


def _intersect(x, y) -> float:
    i = j = 0
    total = 0.0
    while i < len(x) and j < len(y):
        lo, hi = max(x[i][0], y[j][0]), min(x[i][1], y[j][1])
        total += max(0.0, hi - lo)
        if x[i][1] < y[j][1]:
            i += 1
        else:
            j += 1
    return total


def _breakdown(nodes: list[Node], start, end, windows) -> tuple[dict, dict]:
    """Per iteration, averaged over ranks: busy time per kernel class, communication not
    hidden under compute (exposed), and time the GPUs sat idle."""
    busy = {c: 0.0 for c in CLASSES}
    comm: dict[int, list] = {}
    comp: dict[int, list] = {}
    for n in nodes:
        cls = None if host(n) else kernel_class(n.op)
        if cls is None or n.rank not in windows:
            continue
        w0, w1, _ = windows[n.rank]
        a, b = max(start[n.id], w0), min(end[n.id], w1)
        if b <= a:
            continue
        busy[cls] += (b - a) / windows[n.rank][2]
        (comm if cls == "nccl" else comp).setdefault(n.rank, []).append((a, b))
    ranks = len(windows) or 1
    exposed = idle = 0.0
    for r, (w0, w1, k) in windows.items():
        cu, pu = union_intervals(comm.get(r, [])), union_intervals(comp.get(r, []))
        exposed += (_length(cu) - _intersect(cu, pu)) / k
        idle += ((w1 - w0) - _length(union_intervals(cu + pu))) / k
    kernels = {c: v / ranks for c, v in busy.items()}
    breakdown = {f"{c}_s": v for c, v in kernels.items()}
    breakdown["exposed_comm_s"] = exposed / ranks
    breakdown["gpu_idle_s"] = idle / ranks
    return breakdown, kernels


def _per_step(trace: ImportedTrace, base_end, what_end) -> list[dict]:
    out: dict[str, dict] = {}
    for s in trace.steps:
        row = out.setdefault(s.name, {"step": s.name, "measured_s": 0.0, "replayed_s": 0.0,
                                      "whatif_s": 0.0})
        if s.measured_s == s.measured_s:  # NaN where the trace recorded no times
            row["measured_s"] = max(row["measured_s"], s.measured_s)
        row["replayed_s"] = max(row["replayed_s"],
                                float(base_end[s.end_node] - base_end[s.start_node]))
        row["whatif_s"] = max(row["whatif_s"], float(what_end[s.end_node] - what_end[s.start_node]))
    return list(out.values())


def model_coverage(trace: ImportedTrace, iteration_s: float | None, pricer: Recoster,
                   top: int = 10) -> dict:
    """What ``--durations model`` priced: the share of the recorded device busy time that
    the models priced, the priced ops' time per iteration as recorded and as the models
    price them (a check of the models on the trace's own kernels, whatever paces the
    step), and the kernels they could not price (class, name, count, recorded time per
    iteration and its share of the measured step), largest first."""
    steps = len({s.name for s in trace.steps}) or 1
    ranks = len(trace.graph.simulated_ranks) or 1
    total = done = modelled = 0.0
    left: dict[tuple[str, str], list[float]] = {}
    for n in trace.graph.nodes:
        cls = None if host(n) else kernel_class(n.op)
        dur = getattr(n.op, "duration_s", None) or 0.0
        if cls is None or dur <= 0:
            continue
        total += dur
        if priced(n):
            done += dur
            modelled += (pricer.price_collective(n.op, target=False)
                         if isinstance(n.op, Collective) else pricer.price_compute(n.op, False))
            continue
        row = left.setdefault((cls, n.op.name or n.name), [0, 0.0])
        row[0] += 1
        row[1] += dur
    per_it = steps * ranks
    rows = sorted(left.items(), key=lambda kv: -kv[1][1])
    return {"priced_share": done / total if total else 0.0,
            "priced_recorded_s_per_iteration": done / per_it,
            "priced_model_s_per_iteration": modelled / per_it,
            "unpriced_kernels": [
                {"class": c, "name": name[:120], "count": k,
                 "recorded_s_per_iteration": t / per_it,
                 "share_of_step": (t / per_it / iteration_s) if iteration_s else None}
                for (c, name), (k, t) in rows[:top]],
            "unpriced_kernel_names": len(rows)}
