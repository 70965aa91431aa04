"""Energy of a simulated iteration or serving run: a power model per device, the node's
host, the network switches and the facility.

Each GPU draws (hw_models/data/power.yaml, docs/energy.md)::

    P(t) = idle + (TDP - idle) * min(1, sum of the weights of the ops running at t)

where an op's weight says what it keeps busy: tensor-core compute (``compute``), HBM-bound
kernels (``memory``), scale-up transfers (``scale_up``) or the NICs (``nic``). A block
(a layer's forward with its TP collectives) gets the time-weighted mean of its parts.
The same piecewise-constant curve is the power counter of the Chrome trace and its
integral is the energy, so the two always agree.

The rest of a node (CPUs, DRAM, fans, NICs) draws, at full load, ``host_full_fraction``
(fitted on a metered H100 node) of what the vendor's system maximum leaves over the GPUs'
TDPs, and ``host_idle_fraction`` of that when the GPUs idle. Switches draw ``switch_w``
each; the facility multiplies it all by ``pue``. A number the catalog does not have (a
TDP, a system maximum) is left out of the sum and the result says so.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hw_models.catalog import GPUSpec, SystemSpec, power_constants
from hw_models.topology import fabric_defaults
from workloads.graph import (
    Block,
    Collective,
    Compute,
    ExecutionGraph,
    Memory,
    Overlap,
    SendRecv,
)

if TYPE_CHECKING:
    import pandas as pd

    from sim.result import Columns

TENSOR_OPS = frozenset({"gemm", "attention", "latent_attention", "ssd"})   # tensor-core bound; the rest streams HBM


@dataclass(frozen=True)
class PowerModel:
    """Watts of one device as a function of what runs on it."""
    tdp_w: float
    idle_w: float
    weights: dict[str, float]

    @classmethod
    def of(cls, gpu: GPUSpec) -> PowerModel | None:
        if gpu.tdp_w is None:
            return None
        c = power_constants()
        return cls(gpu.tdp_w, c["idle_fraction"] * gpu.tdp_w,
                   {k: c[k] for k in ("compute", "memory", "scale_up", "nic")})

    @property
    def dynamic_w(self) -> float:
        return self.tdp_w - self.idle_w

    def watts(self, activity: float) -> float:
        return self.idle_w + self.dynamic_w * min(1.0, activity)


def rank_curve(starts: np.ndarray, ends: np.ndarray, weights: np.ndarray, t_end: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-constant activity of one rank: (breakpoints, activity on [t_i, t_i+1)),
    the sum of the weights of the rows running, from 0 to ``t_end``."""
    t = np.concatenate([starts, ends])
    d = np.concatenate([weights, -weights])
    order = np.argsort(t, kind="stable")
    t, d = t[order], d[order]
    level = np.cumsum(d)
    keep = np.r_[t[1:] != t[:-1], True]             # last change at each instant
    t, level = t[keep], level[keep]
    if not len(t) or t[0] > 0:
        t, level = np.r_[0.0, t], np.r_[0.0, level]
    return np.r_[t, max(t_end, t[-1])], np.clip(level, 0.0, None)


def energy_of_curve(pm: PowerModel, times: np.ndarray, level: np.ndarray) -> float:
    """Joules of one rank: the integral of P(activity(t))."""
    power = pm.idle_w + pm.dynamic_w * np.minimum(1.0, level)
    return float(np.sum(power * np.diff(times)))


@dataclass(frozen=True)
class Part:
    """GPUs of one system in the cluster (the whole cluster, or one pool of it)."""
    system: SystemSpec
    nodes: int
    first_rank: int = 0

    @property
    def gpus(self) -> int:
        return self.nodes * self.system.gpus_per_node

    @property
    def domain(self) -> int:
        return min(self.system.scale_up.domain_gpus, self.gpus)


class Parts:
    """Rank -> part lookups for a cluster of one or several parts (pools)."""

    def __init__(self, parts: list[Part]):
        firsts = np.r_[0, np.cumsum([p.gpus for p in parts])[:-1]]
        self.parts = [Part(p.system, p.nodes, int(f)) for p, f in zip(parts, firsts, strict=True)]
        self.bounds = np.cumsum([p.gpus for p in parts])
        self._bounds = self.bounds.tolist()
        self.models = [PowerModel.of(p.system.gpu_spec) for p in parts]

    def index(self, rank: int) -> int:
        if len(self.parts) == 1:
            return 0
        return bisect.bisect_right(self._bounds, rank)

    def domain_of(self, rank: int) -> tuple[int, int]:
        i = self.index(rank)
        part = self.parts[i]
        return i, (rank - part.first_rank) // part.domain

    @property
    def world(self) -> int:
        return int(self.bounds[-1])


class RowWeights:
    """The activity weight of each timeline row, from its graph node and the op costs
    (``costs_of(rank)``: the cost model of the rank's part)."""

    def __init__(self, graph: ExecutionGraph, costs_of, parts: Parts, weights: dict[str, float]):
        self.graph, self.costs_of, self.parts, self.w = graph, costs_of, parts, weights
        self._groups: dict[tuple[int, ...], float] = {}

    def _comm(self, ranks: tuple[int, ...]) -> float:
        w = self._groups.get(ranks)
        if w is None:
            doms = {self.parts.domain_of(r) for r in ranks}
            w = self._groups[ranks] = self.w["scale_up"] if len(doms) <= 1 else self.w["nic"]
        return w

    def of_op(self, op, rank: int) -> float:
        if isinstance(op, Compute):
            return self.w["compute"] if op.op_class in TENSOR_OPS else self.w["memory"]
        if isinstance(op, Collective):
            return self._comm(op.group.ranks)
        if isinstance(op, SendRecv):
            return self._comm((rank, op.peer))
        if isinstance(op, Memory):
            return 0.0 if op.kind in ("alloc", "free") else self.w["nic"]
        if isinstance(op, Block):
            costs = self.costs_of(rank)
            times = [costs.op_time(sub) for sub in op.ops]
            # the GPU idles while it waits for the host's launches (sim/costs.py HostLaunch)
            total = sum(times) + costs.parts(op).get("host", 0.0)
            return sum(t * self.of_op(sub, rank) for t, sub in zip(times, op.ops, strict=True)
                       ) / total if total > 0 else 0.0
        if isinstance(op, Overlap):
            return self._overlap(op, rank)
        return 0.0

    def _overlap(self, op: Overlap, rank: int) -> float:
        """An Overlap runs its compute and its transfers at the same time: each adds its
        own activity for the time it runs (the power model sums them, capped at the
        TDP), over the op's whole time."""
        costs = self.costs_of(rank)
        total = costs.op_time(op)
        if total <= 0:
            return 0.0
        busy = sum(costs.op_time(sub) * self.of_op(sub, rank) for sub in op.main)
        busy += sum(min(costs.op_time(sub), total) * self.of_op(sub, rank) for sub in op.hidden)
        return busy / total

    def __call__(self, ids, ranks) -> np.ndarray:
        """Weight of each row, given the rows' node ids and ranks."""
        memo: dict[tuple[int, int], float] = {}
        nodes, index = self.graph.nodes, self.parts.index
        out = np.empty(len(ids))
        # Python ints, not numpy scalars, in the loop over every row
        for i, (nid, rank) in enumerate(zip(np.asarray(ids).tolist(), np.asarray(ranks).tolist(),
                                            strict=True)):
            op = nodes[nid].op
            key = (id(op), index(rank))
            w = memo.get(key)
            if w is None:
                w = memo[key] = self.of_op(op, rank)
            out[i] = w
        return out


def switches(system: SystemSpec, nodes: int) -> int:
    """Scale-out switches of a two-tier non-blocking fabric: leaves with radix/2 host
    ports and spines enough for their uplinks (one switch when it has ports enough for
    every NIC; none for one node)."""
    ports = nodes * system.nics_per_node
    if nodes <= 1 or ports == 0:
        return 0
    radix = int(fabric_defaults()["switch_radix"])
    if ports <= radix:
        return 1                                    # one switch holds every port
    leaves = math.ceil(ports / (radix // 2))
    return leaves + math.ceil(leaves * (radix // 2) / radix)


def host_w_per_gpu(system: SystemSpec) -> float | None:
    """Full-load power of the rest of the node, per GPU: the part of the vendor's system
    maximum left over by the GPUs' TDPs, scaled by the measured ``host_full_fraction``."""
    gpu = system.gpu_spec
    if system.system_max_kw is None or gpu.tdp_w is None:
        return None
    rated = max(0.0, system.system_max_kw * 1e3 / system.gpus_per_node - gpu.tdp_w)
    return rated * power_constants()["host_full_fraction"]


def idle_power_w(parts: Parts) -> float:
    """IT watts of the whole cluster with every GPU idle (restarts, checkpoint stalls)."""
    c = power_constants()
    total = 0.0
    for part, pm in zip(parts.parts, parts.models, strict=True):
        host = host_w_per_gpu(part.system) or 0.0
        total += part.gpus * (pm.idle_w + host * c["host_idle_fraction"])
        total += switches(part.system, part.nodes) * c["switch_w"]
    return total


def account(parts: Parts, t: float, gpu_j: list[float], tokens: float, pue: float
            ) -> dict[str, Any]:
    """Totals over ``t`` seconds for parts whose GPU boards used ``gpu_j`` joules each."""
    c = power_constants()
    host_j = switch_j = 0.0
    missing = []
    for part, pm, j in zip(parts.parts, parts.models, gpu_j, strict=True):
        activity = (j / (part.gpus * t) - pm.idle_w) / pm.dynamic_w if t > 0 else 0.0
        host = host_w_per_gpu(part.system)
        if host is None:
            missing.append(f"host power of {part.system.gpu_spec.name} nodes (no published "
                           f"system maximum)")
        else:
            hi = c["host_idle_fraction"]
            host_j += host * (hi + (1 - hi) * activity) * part.gpus * t
        switch_j += switches(part.system, part.nodes) * c["switch_w"] * t
    gpus_j = float(sum(gpu_j))
    it_j = float(gpus_j + host_j + switch_j)
    host_j, switch_j = float(host_j), float(switch_j)
    world = parts.world
    return {
        "energy_j": it_j * pue, "avg_power_w_per_gpu": gpus_j / (world * t) if t > 0 else 0.0,
        "joules_per_token": it_j * pue / tokens if tokens else None,
        "energy": {"gpu_j": gpus_j, "host_j": host_j, "switch_j": switch_j, "it_j": it_j,
                   "pue": pue, "facility_j": it_j * pue,
                   "idle_w_per_gpu": float(np.mean([m.idle_w for m in parts.models])),
                   "tdp_w_per_gpu": float(np.mean([m.tdp_w for m in parts.models])),
                   "not_counted": missing + ["storage"],
                   "power_model": "vendor TDP; GPU idle fraction and activity weights are "
                                  "stated assumptions; host draw fitted on a metered H100 "
                                  "node (hw_models/data/power.yaml)"}}


def unavailable(parts: Parts) -> dict[str, Any]:
    names = [p.system.gpu_spec.name for p, m in zip(parts.parts, parts.models, strict=True)
             if m is None]
    return {"energy_j": None, "avg_power_w_per_gpu": None, "joules_per_token": None,
            "energy": {"not_counted": [f"everything: no published TDP for {', '.join(names)}"]}}


def training_energy(timeline, graph: ExecutionGraph, costs_of, parts: Parts,
                    t_iter: float, tokens: float, pue: float
                    ) -> tuple[dict[str, Any], Columns | None]:
    """Energy of one training iteration, and the power curve of every simulated rank
    (rank, t_s, watts) for the trace. ``timeline``: a DataFrame or the ``Columns`` of one
    (id, rank, start, end). Each simulated rank stands for world / simulated ranks of its
    part (its symmetric peers)."""
    if any(m is None for m in parts.models):
        return unavailable(parts), None
    from sim.result import Columns
    cols = timeline.data if isinstance(timeline, Columns) else timeline
    ids, ranks = np.asarray(cols["id"]), np.asarray(cols["rank"])
    start, end = np.asarray(cols["start"], float), np.asarray(cols["end"], float)
    weights = RowWeights(graph, costs_of, parts, parts.models[0].weights)(ids, ranks)
    order = np.argsort(ranks, kind="stable")          # rows of each rank, in timeline order
    uniq, first = np.unique(ranks[order], return_index=True)
    scale = parts.world / len(uniq)
    gpu_j = [0.0] * len(parts.parts)
    curve: dict[str, list] = {"rank": [], "t_s": [], "watts": []}
    for rank, idx in zip(uniq.tolist(), np.split(order, first[1:]), strict=True):
        i = parts.index(rank)
        pm = parts.models[i]
        times, level = rank_curve(start[idx], end[idx], weights[idx], t_iter)
        gpu_j[i] += energy_of_curve(pm, times, level) * scale
        curve["rank"].append(np.full(len(times) - 1, rank, dtype=ranks.dtype))
        curve["t_s"].append(times[:-1])
        curve["watts"].append(pm.idle_w + pm.dynamic_w * np.minimum(1.0, level))
    return account(parts, t_iter, gpu_j, tokens, pue), Columns(
        {k: np.concatenate(v) for k, v in curve.items()})


def run_energy(step: dict[str, Any], parts: Parts, step_s: float, run: dict[str, Any],
               pue: float) -> dict[str, Any]:
    """Energy of a whole ``run:``: steps (kept or rolled back, stretched by stragglers) at
    the iteration's power, restarts and checkpoint stalls at the cluster's idle power."""
    if step.get("energy_j") is None:
        return {"energy_j": None}
    wall = run["run_days"] * 86400.0
    stalled = (run.get("recovery_hours", 0.0) + run.get("checkpoint_hours", 0.0)) * 3600.0
    busy_j = (wall - stalled) * step["energy_j"] / step_s
    idle_j = stalled * idle_power_w(parts) * pue
    return {"energy_j": busy_j + idle_j, "idle_energy_j": idle_j, "energy_mwh": (busy_j + idle_j) / 3.6e9}


def power_counter_events(curve: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Chrome trace counter track ("ph": "C") of each simulated rank's board power."""
    if curve is None:
        return []
    return [{"name": "power", "ph": "C", "pid": int(r.rank), "ts": r.t_s * 1e6,
             "args": {"watts": round(float(r.watts), 3)}} for r in curve.itertuples()]


def serving_energy(iterations: pd.DataFrame, parts: Parts, replica_part: dict[int, int],
                   gpus_per_replica: int, tokens: float, pue: float) -> dict[str, Any]:
    """Energy of a serving run from 0 to the last iteration's end: every GPU of the
    cluster at idle, plus each iteration's dynamic power on its replica's GPUs (with
    prefill: tensor-core bound, ``compute``; decode only: weight-streaming, ``memory``).
    ``replica_part``: the part (pool) of each replica."""
    if any(m is None for m in parts.models):
        return unavailable(parts)
    if not len(iterations):
        return {}
    t_end = float(iterations.end_s.max())
    gpu_j = [p.gpus * m.idle_w * t_end for p, m in zip(parts.parts, parts.models, strict=True)]
    prefill = iterations.prefill_tokens.to_numpy() > 0
    dur = (iterations.end_s - iterations.start_s).to_numpy()
    for rep, p_idx, d in zip(iterations.replica.to_numpy(), prefill, dur, strict=True):
        i = replica_part.get(int(rep), 0)
        pm = parts.models[i]
        w = pm.weights["compute"] if p_idx else pm.weights["memory"]
        gpu_j[i] += gpus_per_replica * pm.dynamic_w * min(1.0, w) * d
    out = account(parts, t_end, gpu_j, tokens, pue)
    out["energy"]["seconds"] = t_end
    return out


def parts_of(sc) -> Parts:
    """The scenario's cluster as parts: its pools in order, or its one system."""
    from hw_models import catalog
    pools = sc.cluster.pools or []
    if len(pools) > 0:
        return Parts([Part(catalog.system(p.system), p.nodes) for p in pools])
    return Parts([Part(catalog.system(sc.cluster.system), sc.cluster.nodes)])


def serving_power_events(iterations: pd.DataFrame, energy: dict[str, Any] | None
                         ) -> list[dict[str, Any]]:
    """Chrome trace counter track of each replica's per-GPU board power during a serving
    run: idle between iterations, idle + the iteration's activity while one runs (mean
    idle and TDP of the cluster's GPUs)."""
    if not energy or "idle_w_per_gpu" not in energy or not len(iterations):
        return []
    idle, tdp = energy["idle_w_per_gpu"], energy["tdp_w_per_gpu"]
    c = power_constants()
    events = []
    for r in iterations.itertuples():
        w = c["compute"] if r.prefill_tokens > 0 else c["memory"]
        events.append({"name": "power", "ph": "C", "pid": int(r.replica), "ts": r.start_s * 1e6,
                       "args": {"watts": round(idle + (tdp - idle) * min(1.0, w), 3)}})
        events.append({"name": "power", "ph": "C", "pid": int(r.replica), "ts": r.end_s * 1e6,
                       "args": {"watts": round(idle, 3)}})
    return events
