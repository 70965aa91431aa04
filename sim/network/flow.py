"""Flow-level network: collectives and send/recv as flows on topology links.

``FlowNetwork(layout, profile, topology_cfg)`` has the same interface as
``AnalyticalNetwork`` (``collective_time``, ``p2p_time`` and the SimPy processes
``collective(env, op)`` / ``p2p(env, src, dst, nbytes)``). ``topology_cfg`` is the
scenario's ``cluster.network`` mapping (see hw_models.topology.build_topology); the
layout's ``nic_gbps`` and ``oversubscription`` fill in what it leaves out. Extra keys
``algo`` / ``proto`` force an algorithm / protocol (like NCCL_ALGO / NCCL_PROTO) and
``channels`` caps the channel count.

A collective waits NCCL's latency term, then runs its plan's phases on the shared
``Fabric`` of the environment, where it contends with every other flow in flight.

Symmetric peers: when the graph holds only representative ranks, call
``set_simulated_ranks(ranks)``. A collective then also places the flows of its sibling
groups (the same group shifted by a rank offset, e.g. the other DP groups of a TP x DP
layout) whose ranks are not simulated and that share a scale-up domain with the group
or span several domains: they load the links as the real peers would.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any

import simpy

from hw_models.profile import Profile
from hw_models.topology import build_topology
from sim.network.analytical import ClusterLayout
from sim.network.collectives.tuner import Choice, Tuner
from workloads.graph import Collective, CommGroup

TUNER_KEYS = ("algo", "proto", "channels")


class FlowNetwork:
    fidelity = "flow"

    def __init__(self, layout: ClusterLayout, profile: Profile,
                 topology_cfg: dict[str, Any] | None = None):
        cfg = dict(topology_cfg or {})
        self.algo, self.proto = cfg.pop("algo", None), cfg.pop("proto", None)
        channels = int(cfg.pop("channels", 8))
        cfg.setdefault("nic_gbps", layout.nic_gbps)
        if layout.oversubscription != 1.0:
            cfg.setdefault("oversubscription", layout.oversubscription)
        self.layout, self.profile = layout, profile
        self.topology = build_topology(layout.system, layout.nodes, cfg)
        intra = "pcie" if layout.system.scale_up.kind == "pcie" else "nvlink"
        self.tuner = Tuner(self.topology, dict(profile.fabric), intra,
                           nvls=layout.system.scale_up.nvls, sharp=bool(cfg.get("sharp", False)),
                           max_channels=channels)
        self._fabrics: dict[int, tuple[simpy.Environment, Any]] = {}
        self._simulated: frozenset[int] | None = None
        self._times: dict[tuple, float] = {}

    def set_simulated_ranks(self, ranks: Iterable[int] | None) -> None:
        self._simulated = None if ranks is None else frozenset(ranks)

    def choose(self, kind: str, nbytes: float, group: CommGroup) -> Choice:
        return self.tuner.choose(kind, nbytes, tuple(group.ranks), self.algo, self.proto)

    # Closed-form-free queries: run the transfer alone in a private environment.
    def collective_time(self, kind: str, nbytes: float, group: CommGroup) -> float:
        if group.size <= 1 or nbytes <= 0:
            return 0.0
        key = (kind, float(nbytes), tuple(group.ranks))
        if key not in self._times:
            env = simpy.Environment()
            env.process(self.collective(env, Collective(kind, nbytes, group)))
            env.run()
            self._times[key] = env.now
        return self._times[key]

    def p2p_time(self, src: int, dst: int, nbytes: float) -> float:
        if nbytes <= 0 or src == dst:
            return 0.0
        return self.collective_time("sendrecv", nbytes, CommGroup((src, dst)))

    def fabric(self, env: simpy.Environment):
        from sim.network.fabric import Fabric
        entry = self._fabrics.get(id(env))
        if entry is None or entry[0] is not env:
            entry = (env, Fabric(env, self.topology.cap))
            self._fabrics[id(env)] = entry
        return entry[1]

    def collective(self, env: simpy.Environment, op: Collective) -> Generator:
        group = op.group
        if group.size <= 1 or op.bytes <= 0:
            return
        choice = self.choose(op.kind, op.bytes, group)
        yield env.timeout(choice.latency_s)
        groups = [tuple(group.ranks)] + self.siblings(tuple(group.ranks))
        plans = [self.tuner.plan(choice, op.kind, op.bytes, g) for g in groups]
        topo, fabric = self.topology, self.fabric(env)
        for i in range(len(plans[0])):
            flows = [(topo.route_v(u, v, s), b * choice.wire_factor)
                     for plan in plans for (u, v, b, s) in plan[i]]
            yield fabric.transfer(flows)

    def p2p(self, env: simpy.Environment, src: int, dst: int, nbytes: float) -> Generator:
        yield from self.collective(env, Collective("sendrecv", nbytes, CommGroup((src, dst))))

    def siblings(self, ranks: tuple[int, ...]) -> list[tuple[int, ...]]:
        """Unsimulated translates of the group that load the same links (see module doc)."""
        if self._simulated is None or len(ranks) < 2:
            return []
        world, dom = self.layout.world_size, self.topology.domain
        spans = len({r // dom for r in ranks}) > 1
        lo, hi = min(ranks), max(ranks)
        out = []
        for off in range(-lo, world - hi):
            if off == 0:
                continue
            g = tuple(r + off for r in ranks)
            if any(r in self._simulated for r in g) or set(g) & set(ranks):
                continue
            if spans or {r // dom for r in g} & {r // dom for r in ranks}:
                out.append(g)
        return _disjoint(out)


def _disjoint(groups: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Keep translates that do not overlap an earlier one (each peer placed once)."""
    seen: set[int] = set()
    out = []
    for g in groups:
        if not seen.intersection(g):
            out.append(g)
            seen.update(g)
    return out
