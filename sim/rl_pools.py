"""RL placement on a heterogeneous cluster (``cluster.pools``, docs/hardware.md).

``placement: {rollout_pool: NAME, train_pool: NAME}`` puts the rollout engine on one pool
and the training-side passes on another (``rollout_gpus`` / ``train_gpus`` default to the
whole pool). Each phase runs on a plain view of its pool (that pool's system, nodes,
profile and scale-up fabric), so generation is costed on the rollout pool's GPU and
training on the training pool's. The nccl weight sync crosses the pools' common network:
every rollout GPU receives its whole rollout shard from a training GPU, at the scale-out
curve of the sender's profile and the slower pool's NIC bandwidth per GPU
(``sim.pools.PooledNetwork``, as pipeline sends between pools). Both names on the same
pool split that pool as ``{rollout_gpus, train_gpus}`` does on a plain cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from hw_models import catalog
from hw_models.errors import ClusterSimError, InfeasiblePlanError
from sim.rl_config import PoolSplit, RLWorkload
from sim.rl_timeline import PoolSizes
from sim.scenario import PoolConfig, Scenario
from workloads.graph import CommGroup


@dataclass(frozen=True)
class PooledPlacement:
    rollout: Scenario          # the step seen on the rollout pool alone
    train: Scenario            # ... and on the training pool alone
    sizes: PoolSizes
    rollout_pool: str
    train_pool: str

    @property
    def same_pool(self) -> bool:
        return self.rollout_pool == self.train_pool


def uses_pools(sc: Scenario) -> bool:
    w: RLWorkload = sc.workload
    named = isinstance(w.placement, PoolSplit) and w.placement.pooled
    return sc.cluster.pools is not None or named


def resolve(sc: Scenario) -> PooledPlacement | Scenario:
    """The placement on the cluster's pools: a PooledPlacement, or (colocated on a cluster
    of one pool) the plain scenario of that pool."""
    w: RLWorkload = sc.workload
    pools = sc.cluster.pools
    if pools is None:
        raise ClusterSimError("placement.rollout_pool / train_pool name pools, but the cluster "
                              "has no cluster.pools; give rollout_gpus and train_gpus instead")
    by_name = {p.name: p for p in pools}
    if w.colocated or not w.placement.pooled:
        if w.colocated and len(pools) == 1:
            return view(sc, pools[0], "colocated")
        raise ClusterSimError(f"placement on a cluster of pools {list(by_name)}: name them, "
                              "placement: {rollout_pool: NAME, train_pool: NAME}")
    p = w.placement
    for key, name in (("rollout_pool", p.rollout_pool), ("train_pool", p.train_pool)):
        if name not in by_name:
            raise ClusterSimError(f"placement.{key} {name!r} is not a pool of this cluster; "
                                  f"pools: {list(by_name)}")
    ro, tr = by_name[p.rollout_pool], by_name[p.train_pool]
    r, t = _gpus(ro, tr, p)
    split = {"rollout_gpus": r, "train_gpus": t}
    return PooledPlacement(view(sc, ro, split), view(sc, tr, split), PoolSizes(r, t, False),
                           ro.name, tr.name)


def _gpus(ro: PoolConfig, tr: PoolConfig, p: PoolSplit) -> tuple[int, int]:
    size = {q.name: q.nodes * catalog.system(q.system).gpus_per_node for q in (ro, tr)}
    if ro.name == tr.name:
        have = size[ro.name]
        if p.rollout_gpus is None and p.train_gpus is None:
            raise InfeasiblePlanError(f"placement: rollout_pool and train_pool are both {ro.name!r}; "
                                      "give rollout_gpus and train_gpus to split it")
        r = p.rollout_gpus or have - p.train_gpus
        t = p.train_gpus or have - p.rollout_gpus
        if r <= 0 or t <= 0 or r + t > have:
            raise InfeasiblePlanError(f"placement: rollout_gpus {r} + train_gpus {t} on pool "
                                      f"{ro.name!r} of {have} GPUs; shrink a share")
        return r, t
    r = p.rollout_gpus or size[ro.name]
    t = p.train_gpus or size[tr.name]
    for key, n, q in (("rollout_gpus", r, ro), ("train_gpus", t, tr)):
        if n > size[q.name]:
            raise InfeasiblePlanError(f"placement.{key} {n}: pool {q.name!r} has "
                                      f"{size[q.name]} GPUs")
        per = catalog.system(q.system).gpus_per_node
        if n % per and per % n:
            raise InfeasiblePlanError(f"placement.{key} {n}: a share of pool {q.name!r} must be "
                                      f"whole nodes of {per} GPUs or a divisor of one node")
    return r, t


def view(sc: Scenario, pool: PoolConfig, placement) -> Scenario:
    """The scenario as a plain cluster of one pool (its system and nodes)."""
    data = sc.model_dump(mode="json", exclude_none=True)
    cluster = data["cluster"]
    cluster.pop("pools", None)
    cluster.update(system=pool.system, nodes=pool.nodes)
    if pool.price_per_gpu_hour is not None:
        cluster["price_per_gpu_hour"] = pool.price_per_gpu_hour
    data["workload"]["placement"] = placement
    return Scenario(**data)


def cross_pool_sync(sc: Scenario, where: PooledPlacement, params: float, weight_bytes: float) -> dict:
    """nccl sync from the training pool to the rollout pool over the common network: each
    rollout GPU receives its whole shard (nothing is in place on another pool); NCCL
    broadcasts pipeline, so the time is that of one receiver. broadcast: one NCCL ring over
    both pools, training ranks first (sim/rl_sync.py), priced by the pooled network as a
    single cluster's ring: each byte enters a scale-up domain once over all its NICs, so the
    slower pool's NICs of one domain (capped by its scale-up bandwidth) carry the model."""
    from sim.pools import PooledNetwork, PoolIndex, make_pools
    w: RLWorkload = sc.workload
    rp = w.rollout.parallel
    index = PoolIndex(make_pools(sc))
    net = PooledNetwork(index, sc.cluster.network.oversubscription)
    pool = {p.name: p for p in index.pools}
    train, rollout = pool[where.train_pool], pool[where.rollout_pool]
    need = params * weight_bytes / (1 if w.sync == "broadcast" else rp.tp * rp.pp * rp.ep)
    if w.sync == "broadcast":
        ranks = [p.first_rank + r for p, n in ((train, where.sizes.train),
                                               (rollout, where.sizes.rollout)) for r in range(n)]
        seconds = net.collective_time("broadcast", need, CommGroup(tuple(ranks)))
    else:
        seconds = net.p2p_time(train.first_rank, rollout.first_rank, need)
    return {"weight_sync_s": seconds, "sync_bytes_per_gpu": need,
            "sync_bytes_total": need * where.sizes.rollout}
