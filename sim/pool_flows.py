"""Heterogeneous clusters at ``sim.fidelity: flow``: each pool's own flow fabric, and the
traffic between pools as flows over the pools' common network.

Inside a pool, collectives and sends run on that pool's ``FlowNetwork`` (its system's
scale-up fabric and scale-out topology, its profile's fabric curves), with the graph's
global ranks shifted to the pool's own. Traffic between pools (pipeline sends at a pool
boundary, a collective whose group spans pools such as the tied-embedding sync) crosses
the common network: every GPU reaches one non-blocking core through its share of its
node's NICs (``nic_bw_per_gpu / oversubscription`` each way), so flows that leave or
enter the same GPU share its NIC and those of different GPUs do not. A transfer waits the
latency of one network step on the sender's fitted scale-out curve (the analytical
model's ``p2p_latency_us``), then sends ``bytes / eff(bytes)`` wire
bytes (the same curve as the analytical model's, so with no other traffic the two
fidelities give the same time: latency + bytes / (eff x min(NIC share of both ends))).
A collective across pools runs as a ring over its ranks: each rank sends the bus bytes
(nccl-tests' definitions) to the next, after the latency the analytical model charges that
ring (the curve's, adjusted by NCCL's latency on this group against the fitted one).

Not modelled: the common network and a pool's own scale-out fabric are separate, so
cross-pool flows do not contend with a pool's own DP traffic on its NICs.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import simpy

from sim.network.analytical import bus_factor
from sim.network.flow import TOLERANCE
from workloads.graph import Collective, CommGroup


class CommonNetwork:
    """Per-GPU up and down links (its NIC share) into one non-blocking core: up link of
    rank r is r, its down link is world + r."""

    def __init__(self, pools, oversubscription: float = 1.0):
        share = np.concatenate([np.full(p.gpus, p.system.nic_bw_per_gpu / oversubscription)
                                for p in pools])
        self.world = len(share)
        self.cap = np.concatenate([share, share])
        self._rates: dict = {}
        self._fabrics: dict[int, tuple[simpy.Environment, object]] = {}

    def fabric(self, env: simpy.Environment):
        from sim.network.fabric import Fabric
        hit = self._fabrics.get(id(env))
        if hit is None or hit[0] is not env:
            hit = self._fabrics[id(env)] = (env, Fabric(env, self.cap, self._rates, TOLERANCE))
        return hit[1]

    def send(self, env: simpy.Environment, pairs: tuple[tuple[int, int], ...], nbytes: float,
             curve, ramp: float = 1.0) -> Generator:
        """Flows src -> dst of ``nbytes`` payload each, after the curve's latency, with the
        curve's size ramp read at ``ramp`` x ``nbytes`` (analytical.nic_ramp_scale)."""
        pairs = tuple((s, d) for s, d in pairs if s != d)
        if nbytes <= 0 or not pairs:
            return
        yield env.timeout(curve.latency_us * 1e-6)
        links = np.array([x for s, d in pairs for x in (s, self.world + d)], np.int64)
        row = np.repeat(np.arange(len(pairs)), 2)
        wire = np.full(len(pairs), nbytes / curve.eff(ramp * nbytes))
        yield self.fabric(env).start(row, links, wire, np.ones(len(pairs)), None,
                                     ("xpool", pairs), np.unique(links))

    def alone(self, pairs, nbytes: float, curve, ramp: float = 1.0) -> float:
        """Seconds of ``send`` with no other traffic (a private environment)."""
        env = simpy.Environment()
        env.process(self.send(env, pairs, nbytes, curve, ramp))
        env.run()
        self._fabrics.pop(id(env), None)
        return env.now


def ring_pairs(ranks: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    return tuple((ranks[i], ranks[(i + 1) % len(ranks)]) for i in range(len(ranks)))


class PooledFlowNetwork:
    """The pooled engine's network at flow fidelity (see the module docstring)."""
    fidelity = "flow"

    def __init__(self, index, oversubscription: float = 1.0):
        self.index, self.oversub = index, oversubscription
        self.common = CommonNetwork(index.pools, oversubscription)
        self._local: dict[int, tuple[Collective, Collective]] = {}
        self._p2p_curves: dict[str, object] = {}    # pool name -> curve at a send's latency

    def set_simulated_ranks(self, ranks) -> None:
        for p in self.index.pools:
            mine = None if ranks is None else [p.local(r) for r in ranks
                                               if p.first_rank <= r < p.first_rank + p.gpus]
            p.network.set_simulated_ranks(mine)

    def _pool_of_group(self, group: CommGroup):
        pools = {id(self.index.of(r)) for r in group.ranks}
        return self.index.of(group.ranks[0]) if len(pools) == 1 else None

    def _curve(self, rank: int):
        """The rank's pool's scale-out curve with the latency the analytical model charges a
        send across domains (sim.network.analytical.p2p_latency_us: one network step)."""
        from sim.network.analytical import p2p_latency_us
        from sim.pools import scale_out_curve
        pool = self.index.of(rank)
        got = self._p2p_curves.get(pool.name)
        if got is None:
            curve = scale_out_curve(pool)
            got = self._p2p_curves[pool.name] = curve.model_copy(
                update={"latency_us": p2p_latency_us(curve)})
        return got

    def _ring_curve(self, kind: str, group: CommGroup):
        """The first rank's scale-out curve with the latency the analytical model charges
        a ring over the group (sim.network.analytical.ring_latency_us): NCCL's latency on
        this group, not on the group the curve was fitted on; and the scale its size ramp
        is read at (the analytical ring's, PooledNetwork.ring_pace)."""
        from sim.network.analytical import RING_KINDS, ring_latency_us
        from sim.pools import PooledNetwork, scale_out_curve
        if kind not in RING_KINDS:
            return self._curve(group.ranks[0]), 1.0
        curve = scale_out_curve(self.index.of(group.ranks[0]))
        pools = list({self.index.of(r).name: self.index.of(r) for r in group.ranks}.values())
        net = PooledNetwork(self.index, self.oversub)
        spans = net.ring_spans(group, pools)
        lat = ring_latency_us(curve, kind, group.size, sum(d for d, _ in spans),
                              max(per for _, per in spans))
        return curve.model_copy(update={"latency_us": lat}), net.ring_pace(curve, pools, spans)[1]

    def collective_time(self, kind: str, nbytes: float, group: CommGroup) -> float:
        pool = self._pool_of_group(group)
        if pool is not None:
            local = CommGroup(tuple(pool.local(r) for r in group.ranks), group.dim)
            return pool.network.collective_time(kind, nbytes, local)
        bus = bus_factor(kind, group.size) * nbytes
        return self.common.alone(ring_pairs(group.ranks), bus, *self._ring_curve(kind, group))

    def p2p_time(self, src: int, dst: int, nbytes: float) -> float:
        a, b = self.index.of(src), self.index.of(dst)
        if a is b:
            return a.network.p2p_time(a.local(src), a.local(dst), nbytes)
        return self.common.alone(((src, dst),), nbytes, self._curve(src))

    def collective(self, env: simpy.Environment, op: Collective) -> Generator:
        pool = self._pool_of_group(op.group)
        if pool is None:
            bus = bus_factor(op.kind, op.group.size) * op.bytes
            yield from self.common.send(env, ring_pairs(op.group.ranks), bus,
                                        *self._ring_curve(op.kind, op.group))
            return
        hit = self._local.get(id(op))
        if hit is None or hit[0] is not op:     # one local op per graph op: the flow
            local = CommGroup(tuple(pool.local(r) for r in op.group.ranks), op.group.dim)
            hit = self._local[id(op)] = (op, Collective(op.kind, op.bytes, local, op.seq,
                                                        op.duration_s, op.name))
        yield from pool.network.collective(env, hit[1])   # network memoises plans per op

    def p2p(self, env: simpy.Environment, src: int, dst: int, nbytes: float) -> Generator:
        a, b = self.index.of(src), self.index.of(dst)
        if a is b:
            yield from a.network.p2p(env, a.local(src), a.local(dst), nbytes)
        else:
            yield from self.common.send(env, ((src, dst),), nbytes, self._curve(src))
