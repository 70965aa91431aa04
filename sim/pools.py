"""Heterogeneous clusters: named pools of systems, and a training pipeline over them.

``cluster.pools: [{name, system, nodes}]`` lays the pools' GPUs out in order: pool 0
holds ranks [0, n0), pool 1 the next n1, ... ``parallel.stage_pools`` names the pool of
every pipeline stage; since stage s holds ranks [s dp tp, (s + 1) dp tp), the stages of
one pool are consecutive and a pool of n GPUs carries n / (dp tp) stages (which is also
what an unset ``stage_pools`` means).

Each rank is timed by its own pool: its GPU's compute model and profile, its scale-up
fabric for the collectives inside the pool (TP, DP). Traffic between pools (pipeline
sends) crosses the pools' common network: the scale-out curve of the sender's profile
at the slower pool's NIC bandwidth per GPU (docs/hardware.md).

Layer split: ``parallel.pipeline_layers`` when given; otherwise ``stage_split: speed``
(default) gives each stage layers in proportion to its speed (1 / the time of one layer's
forward, recompute and backward on its pool, ``layer_time``), ``even`` splits them evenly. At ``sim.fidelity: flow``
each pool plays its own flow fabric and the traffic between pools runs as flows over the
common network (sim/pool_flows.py).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import simpy

from hw_models import catalog, profile
from hw_models.catalog import SystemSpec
from hw_models.errors import ClusterSimError, InfeasiblePlanError
from hw_models.profile import Profile
from sim.costs import OpCosts
from sim.network import AnalyticalNetwork, ClusterLayout
from sim.network.analytical import (
    RING_KINDS,
    bus_factor,
    domain_span,
    nic_ramp_scale,
    ring_link_bw,
    scale_out_p2p_time,
    scale_out_ring_time,
)
from sim.setup import host_launch, paced_compute
from workloads.graph import Collective, CommGroup

if TYPE_CHECKING:
    from workloads.parallel import ParallelPlan
    from workloads.training import TrainingOptions


@dataclass(frozen=True)
class Pool:
    name: str
    system: SystemSpec
    nodes: int
    first_rank: int
    profile: Profile
    network: AnalyticalNetwork      # or FlowNetwork at sim.fidelity flow (sim/pool_flows.py)
    costs: OpCosts

    @property
    def gpus(self) -> int:
        return self.nodes * self.system.gpus_per_node

    def local(self, rank: int) -> int:
        return rank - self.first_rank


def make_pools(sc) -> list[Pool]:
    """The scenario's pools with their cost models, ranks laid out in pool order."""
    names = [p.name for p in sc.cluster.pools]
    if len(set(names)) != len(names):
        raise ClusterSimError(f"cluster.pools: names must be unique, got {names}")
    out, first = [], 0
    world = sum(p.nodes * catalog.system(p.system).gpus_per_node for p in sc.cluster.pools)
    for p in sc.cluster.pools:
        system = catalog.system(p.system)
        prof = profile.load(system.default_profile)
        layout = ClusterLayout(system, p.nodes, system.nic_gbps,
                               sc.cluster.network.oversubscription)
        net = _pool_network(sc, layout, prof)
        costs = OpCosts(paced_compute(system.gpu_spec, prof, sc.sim.speed_scale, world),
                        _Shifted(net, first), host=host_launch(sc, system))
        out.append(Pool(p.name, system, p.nodes, first, prof, net, costs))
        first += p.nodes * system.gpus_per_node
    return out


def _pool_network(sc, layout: ClusterLayout, prof: Profile):
    """The pool's own network at the scenario's fidelity (flow: its system's topology
    with the scenario's network keys, as a single-system cluster gets)."""
    if sc.sim.fidelity != "flow":
        return AnalyticalNetwork(layout, prof)
    from sim.network.flow import FlowNetwork
    return FlowNetwork(layout, prof, sc.cluster.network.model_dump(exclude_none=True))


@dataclass(frozen=True)
class _Shifted:
    """A pool's network seen with global ranks (the graph's) instead of its own."""
    network: AnalyticalNetwork
    first_rank: int

    def collective_time(self, kind: str, nbytes: float, group: CommGroup) -> float:
        local = CommGroup(tuple(r - self.first_rank for r in group.ranks), group.dim)
        return self.network.collective_time(kind, nbytes, local)


def scale_out_curve(pool: Pool):
    """The pool's fitted scale-out curve (profile ``collectives.network``), which prices
    traffic between pools at either fidelity."""
    curve = pool.profile.collectives.get("network")
    if curve is None:
        raise ClusterSimError(f"profile {pool.profile.name!r} of pool {pool.name!r} has no "
                              "collective curve for 'network' links, which traffic between "
                              "pools needs; use a profile fitted with a multi-node sweep")
    return curve


class PoolIndex:
    """Rank -> pool."""

    def __init__(self, pools: list[Pool]):
        self.pools = pools

    def of(self, rank: int) -> Pool:
        for p in self.pools:
            if rank < p.first_rank + p.gpus:
                return p
        last = self.pools[-1]
        raise ClusterSimError(f"rank {rank} is outside the pools' {last.first_rank + last.gpus} GPUs")


class PooledCosts:
    """The engine's cost model: each node costed by its rank's pool."""

    def __init__(self, index: PoolIndex):
        self.index = index

    def duration(self, node) -> float:
        return self.index.of(node.rank).costs.duration(node)

    def parts(self, node) -> dict[str, float]:
        return self.index.of(node.rank).costs.parts(node)

    def of_rank(self, rank: int) -> OpCosts:
        return self.index.of(rank).costs


class PooledNetwork:
    """Collectives inside one pool on that pool's fabric; anything between pools over
    the common network at the slower pool's NIC share per GPU."""
    fidelity = "analytical"

    def __init__(self, index: PoolIndex, oversubscription: float = 1.0):
        self.index, self.oversub = index, oversubscription

    def _local_group(self, group: CommGroup) -> tuple[Pool, CommGroup] | None:
        pools = {self.index.of(r).name for r in group.ranks}
        if len(pools) > 1:
            return None
        pool = self.index.of(group.ranks[0])
        return pool, CommGroup(tuple(pool.local(r) for r in group.ranks), group.dim)

    def set_simulated_ranks(self, ranks) -> None:
        """No link sharing in the closed form."""

    def cross_pool_bw(self, a: Pool, b: Pool) -> float:
        return min(a.system.nic_bw_per_gpu, b.system.nic_bw_per_gpu) / self.oversub

    def collective_time(self, kind: str, nbytes: float, group: CommGroup) -> float:
        hit = self._local_group(group)
        if hit is not None:
            return hit[0].network.collective_time(kind, nbytes, hit[1])
        pools = {self.index.of(r).name: self.index.of(r) for r in group.ranks}.values()
        if kind in RING_KINDS:
            return self._ring_time(kind, nbytes, group, list(pools))
        bw = min(p.system.nic_bw_per_gpu for p in pools) / self.oversub
        return scale_out_p2p_time(scale_out_curve(next(iter(pools))),
                                  bus_factor(kind, group.size) * nbytes, bw)

    def ring_spans(self, group: CommGroup, pools: list[Pool]) -> list[tuple[int, int]]:
        """(scale-up domains, most ranks in one) of the group's ranks in each pool."""
        return [domain_span(p.network.layout, [p.local(r) for r in group.ranks
                                               if self.index.of(r) is p]) for p in pools]

    def _ring_time(self, kind: str, nbytes: float, group: CommGroup, pools: list[Pool]) -> float:
        """One NCCL ring over the group's ranks of every pool, priced as a single cluster's
        ring (sim.network.analytical.scale_out_ring_time) at the scale-out curve of the
        first rank's pool: each pool's domains are entered over their NICs, and the pool
        whose domains bring in the least (ring_link_bw) sets the pace, and its NICs' bytes set
        where the size ramp is read (nic_ramp_scale)."""
        spans = self.ring_spans(group, pools)
        curve = scale_out_curve(pools[0])
        bw, ramp = self.ring_pace(curve, pools, spans)
        return scale_out_ring_time(curve, kind, nbytes, group.size, sum(d for d, _ in spans),
                                   max(per for _, per in spans), bw, ramp)

    def ring_pace(self, curve, pools: list[Pool], spans) -> tuple[float, float]:
        """(bytes/s per GPU, ramp scale) of a ring across the pools: the pool whose domains
        bring in the least NIC bandwidth (ring_link_bw) and where that pool's NICs read the
        curve's size ramp (nic_ramp_scale)."""
        return min((ring_link_bw(p.system.scale_up_bw, per, nic),
                    nic_ramp_scale(curve, p.system.scale_up_bw, per, nic))
                   for p, (_, per) in zip(pools, spans, strict=True)
                   for nic in [p.system.nic_bw_per_gpu / self.oversub])

    def p2p_time(self, src: int, dst: int, nbytes: float) -> float:
        a, b = self.index.of(src), self.index.of(dst)
        if a is b:
            return a.network.p2p_time(a.local(src), a.local(dst), nbytes)
        if nbytes <= 0:
            return 0.0
        return scale_out_p2p_time(scale_out_curve(a), nbytes, self.cross_pool_bw(a, b))

    def collective(self, env: simpy.Environment, op: Collective) -> Generator:
        yield env.timeout(self.collective_time(op.kind, op.bytes, op.group))

    def p2p(self, env: simpy.Environment, src: int, dst: int, nbytes: float) -> Generator:
        yield env.timeout(self.p2p_time(src, dst, nbytes))


def pooled_network(sc, index: PoolIndex):
    """The engine's network over the pools at the scenario's fidelity."""
    oversub = sc.cluster.network.oversubscription
    if sc.sim.fidelity != "flow":
        return PooledNetwork(index, oversub)
    from sim.pool_flows import PooledFlowNetwork
    return PooledFlowNetwork(index, oversub)


def stage_pool_list(sc, pools: list[Pool], pp: int, stage_gpus: int) -> list[Pool]:
    """Check ``parallel.stage_pools`` against the pools and return the pool of each stage."""
    by_name = {p.name: p for p in pools}
    names = sc.workload.parallel.stage_pools or _auto_stage_pools(pools, pp, stage_gpus)
    if len(names) != pp:
        raise ClusterSimError(f"parallel.stage_pools has {len(names)} entries; pp={pp} needs one "
                              "per stage")
    bad = [n for n in names if n not in by_name]
    if bad:
        raise ClusterSimError(f"parallel.stage_pools: unknown pool(s) {bad}; allowed: {list(by_name)}")
    order = [p.name for p in pools]
    if [order.index(n) for n in names] != sorted(order.index(n) for n in names):
        raise ClusterSimError(f"parallel.stage_pools {names} must follow the order of "
                              f"cluster.pools {order} (a pool's stages are consecutive ranks)")
    for p in pools:
        want = names.count(p.name) * stage_gpus
        if p.gpus != want:
            raise InfeasiblePlanError(
                f"pool {p.name!r} has {p.gpus} GPUs but carries {names.count(p.name)} stage(s) "
                f"of tp*dp = {stage_gpus} GPUs = {want}; resize the pool or the plan")
    return [by_name[n] for n in names]


def _auto_stage_pools(pools: list[Pool], pp: int, stage_gpus: int) -> list[str]:
    """Without ``stage_pools``: each pool carries (its GPUs / a stage's GPUs) consecutive
    stages, in pool order."""
    counts = {p.name: p.gpus // stage_gpus for p in pools}
    bad = [p.name for p in pools if p.gpus % stage_gpus or not counts[p.name]]
    if bad or sum(counts.values()) != pp:
        raise InfeasiblePlanError(
            f"pools {[(p.name, p.gpus) for p in pools]} do not split into pp={pp} stages of "
            f"tp*dp = {stage_gpus} GPUs; give parallel.stage_pools or resize the pools")
    return [name for name, n in counts.items() for _ in range(n)]


def balanced_split(layers: int, speeds: list[float], multiple: int = 1) -> tuple[int, ...]:
    """Layers per stage in proportion to the stages' speeds, in units of ``multiple``
    (vpp), each stage at least one unit; largest remainders get the leftovers."""
    units = layers // multiple
    if units < len(speeds):
        raise InfeasiblePlanError(f"{layers} layers cannot feed {len(speeds)} stages")
    share = [units * s / sum(speeds) for s in speeds]
    n = [max(1, math.floor(x)) for x in share]
    while sum(n) > units:                       # minimum of one unit overshot
        i = max(range(len(n)), key=lambda k: (n[k] - share[k], n[k]))
        n[i] -= 1
    rest = sorted(range(len(n)), key=lambda k: n[k] - share[k])
    for i in rest[:units - sum(n)]:
        n[i] += 1
    return tuple(k * multiple for k in n)


def layer_time(pool: Pool, model, plan: ParallelPlan, opts: TrainingOptions, stage: int) -> float:
    """Seconds of one layer's forward and backward (recompute and gradient accumulation
    included) on the GPUs of ``pool``, which runs pipeline stage ``stage``: the kernels the
    graph builder plays there (workloads.training.stage_layer_ops: layer options, FP8
    recipe, context parallelism, TP overlap, MoE groups), EP communication hidden as the
    engine hides it in a block. A model with several kinds of layer (MoE or dense, windowed
    or full attention) gets the mean over all its layers."""
    from collections import Counter

    from workloads import moe_training
    from workloads.graph import Block
    from workloads.moe import layer_kind
    from workloads.moe_layers import layer_forward_at
    from workloads.training import stage_layer_ops

    ctx, ops = stage_layer_ops(model, plan, opts, stage)
    overlap = ("ep",) if opts.moe is not None and opts.moe.overlap else ()

    def played(fwd, bwd) -> float:
        return sum(pool.costs.uncached_time(Block(tuple(b), name, overlap))
                   for b, name in ((fwd, "fwd"), (bwd, "bwd")))

    if model.uniform:
        return played(ops.fwd, ops.bwd)
    kinds = Counter(layer_kind(model, i) for i in range(model.layers))
    first = {k: next(i for i in range(model.layers) if layer_kind(model, i) == k) for k in kinds}
    return sum(n * played(ops.transform(layer_forward_at(ctx, first[k])),
                          ops.transform(moe_training.layer_bwd_ops(ctx, plan, first[k]), True))
               for k, n in kinds.items()) / model.layers


def pooled_plan(sc, pools: list[Pool], model) -> tuple[list[Pool], ParallelPlan, TrainingOptions]:
    """(the pool of each stage, the checked parallel plan, the training options) of a
    pooled scenario; ``stage_split: speed`` without ``pipeline_layers`` splits the layers by
    the stages' ``layer_time``."""
    from dataclasses import replace

    from sim.setup import check_graph_size, moe_options, training_options
    from workloads import parallel

    w, p = sc.workload, sc.workload.parallel
    world = sum(pl.gpus for pl in pools)
    dp = p.dp or parallel.derive_dp(world, p.tp, p.pp)
    stages = stage_pool_list(sc, pools, p.pp, dp * p.tp)
    plan = parallel.ParallelPlan(
        tp=p.tp, pp=p.pp, dp=dp, micro_batch=w.micro_batch, global_batch=w.global_batch,
        vpp=p.vpp, sequence_parallel=p.sequence_parallel, schedule=p.schedule, zero=p.zero,
        recompute=parallel.plan_recompute(w.recompute, w.recompute_modules), pipeline_layers=tuple(p.pipeline_layers or ()) or None,
        ep=p.ep, etp=p.etp)
    # MoE layers: dispatch as on the first stage's pool (docs/moe.md)
    opts = replace(training_options(w), moe=moe_options(w, model, stages[0].network.layout))
    if plan.pipeline_layers is None and p.stage_split == "speed":
        speeds = [1 / layer_time(pl, model, plan, opts, s) for s, pl in enumerate(stages)]
        plan = replace(plan, pipeline_layers=balanced_split(model.layers, speeds, p.vpp))
    parallel.validate(plan, model, world)
    check_graph_size(plan, model)
    return stages, plan, opts


def simulate_pools(sc):
    """One training iteration of a pipeline over the scenario's pools -> SimResult."""
    import time
    from types import SimpleNamespace

    import pandas as pd

    from sim.cost import energy_and_cost
    from sim.energy import Part, Parts
    from sim.engine import Engine
    from sim.result import SimResult, breakdown, timeline_frame
    from sim.simulate import calibration_of, recompute_factor
    from workloads import memory, training
    from workloads.model import model_flops, resolve

    t0 = time.perf_counter()
    pools = make_pools(sc)
    w = sc.workload
    world = sum(pl.gpus for pl in pools)
    model = resolve(w.model).with_seq_len(w.seq_len)
    stages, plan, opts = pooled_plan(sc, pools, model)
    mem = pd.DataFrame([m.gib() for m in memory.memory_per_stage(
        model, plan, opts.grad_bytes, w.attention == "flash", optimizer_kind=opts.optimizer,
        moment_bytes=opts.adam_moment_bytes)])
    if sc.sim.check_memory:
        _check_stage_memory(mem, stages)
    graph = training.build(model, plan, opts)
    index = PoolIndex(pools)
    costs = PooledCosts(index)
    network = pooled_network(sc, index)
    network.set_simulated_ranks(graph.simulated_ranks)
    engine = Engine(graph, costs, network)
    rows = engine.run()
    t_iter = max(r.end for r in rows)
    tokens = plan.global_batch * model.seq_len
    peak = sum(pl.gpus * pl.system.gpu_spec.peak_flops(w.precision) for pl in pools)
    mflops = model_flops(model, tokens)
    rf = recompute_factor(SimpleNamespace(model=model, plan=plan, options=opts))
    timeline = timeline_frame(rows)
    money, power = energy_and_cost(timeline, graph, costs.of_rank,
                                   Parts([Part(pl.system, pl.nodes) for pl in pools]),
                                   sc.cluster, t_iter, tokens)
    layers_of = plan.stage_layers(model.layers)
    pools_out = [{"name": pl.name, "gpus": pl.gpus, "gpu": pl.system.gpu_spec.name,
                  "stages": [s for s, st in enumerate(stages) if st is pl],
                  "layers": [layers_of[s] for s, st in enumerate(stages) if st is pl],
                  "calibration": calibration_of(pl.system, pl.profile)} for pl in pools]
    return SimResult(
        name=sc.name, fidelity=engine.network.fidelity, iteration_time_s=t_iter,
        tokens_per_s=tokens / t_iter, tflops_per_gpu=mflops / t_iter / world / 1e12,
        mfu=mflops / (t_iter * peak), hfu=mflops * rf / (t_iter * peak),
        memory_peak_gib=float(mem.total_gib.max()), breakdown=breakdown(rows, graph),
        memory=mem, timeline=timeline, world_size=world, events=engine.events,
        wall_s=time.perf_counter() - t0, power=power,
        extra={"nodes": len(graph), "microbatches": plan.microbatches,
               "plan": {"tp": plan.tp, "pp": plan.pp, "dp": plan.dp, "vpp": plan.vpp},
               "pipeline_layers": list(layers_of), "pools": pools_out, **money})


def _check_stage_memory(mem, stages: list[Pool]) -> None:
    from hw_models.errors import OutOfMemoryError
    for s, pl in enumerate(stages):
        cap = pl.system.gpu_spec.hbm_bytes / 2**30
        need = float(mem.total_gib.iloc[s])
        if need > cap:
            raise OutOfMemoryError(
                f"plan does not fit: stage {s} on pool {pl.name!r} needs {need:.1f} GiB but a "
                f"{pl.system.gpu_spec.name} has {cap:.1f} GiB; try more tp/pp, zero>=1, "
                "recompute or a smaller micro_batch")
