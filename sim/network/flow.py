"""Flow-level network: collectives and send/recv as flows on topology links.

``FlowNetwork(layout, profile, topology_cfg)`` has the same interface as
``AnalyticalNetwork`` (``collective_time``, ``p2p_time`` and the SimPy processes
``collective(env, op)`` / ``p2p(env, src, dst, nbytes)``). ``topology_cfg`` is the
scenario's ``cluster.network`` mapping (see hw_models.topology.build_topology); the
layout's ``nic_gbps`` and ``oversubscription`` fill in what it leaves out. Extra keys
``algo`` / ``proto`` force an algorithm / protocol (like NCCL_ALGO / NCCL_PROTO) and
``channels`` caps the channel count; ``tolerance`` (default 1e-2; 0 is exact) lets the max-min
solver merge bottleneck levels and flow ends within that relative distance, which makes
phases with many distinct levels (a large all-to-all under ECMP) much cheaper.

A collective waits NCCL's latency term, then runs its plan's phases on the shared
``Fabric`` of the environment, where it contends with every other flow in flight.

Symmetric peers: when the graph holds only representative ranks, call
``set_simulated_ranks(ranks)``. Each unsimulated rank stands in for the nearest
simulated rank below it (ranks are laid out in blocks, one per representative: a
pipeline stage's TP x DP ranks in Megatron order). A collective then also places the
flows of its sibling groups: the same group shifted by a rank offset (e.g. the other
DP groups of a TP x DP layout) such that every shifted rank is unsimulated and stands
in for the same representative as the rank it was shifted from, and that share a
scale-up domain with the group or span several domains. They load the links as the
real peers would, and each real peer is placed by exactly one simulated collective.

Speed: the choice, the flow plan (siblings included, as one incidence list per phase)
and the contention-free rates are cached per (op, bytes, ranks); the fabric re-solves
only the connected component of flows a start or an end touches (sim/network/fabric.py).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any

import numpy as np
import simpy

from hw_models.profile import Profile
from hw_models.topology import build_topology
from sim.network.analytical import ClusterLayout
from sim.network.collectives.tuner import Choice, Tuner
from workloads.graph import Collective, CommGroup

# Relative tolerance of the max-min solver and of flow completion (sim/network/fabric.py):
# a numerical-method setting, not a hardware number. 0 is exact progressive filling.
TOLERANCE = 1e-2


class FlowNetwork:
    fidelity = "flow"

    def __init__(self, layout: ClusterLayout, profile: Profile,
                 topology_cfg: dict[str, Any] | None = None):
        cfg = {k: v for k, v in (topology_cfg or {}).items() if v is not None}
        self.algo, self.proto = cfg.pop("algo", None), cfg.pop("proto", None)
        channels = int(cfg.pop("channels", 8))
        self.tolerance = float(cfg.pop("tolerance", TOLERANCE))
        cfg.setdefault("nic_gbps", layout.nic_gbps)
        if layout.oversubscription != 1.0:
            cfg.setdefault("oversubscription", layout.oversubscription)
        self.layout, self.profile = layout, profile
        self.topology = build_topology(layout.system, layout.nodes, cfg)
        intra = "pcie" if layout.system.scale_up.kind == "pcie" else "nvlink"
        self.tuner = Tuner(self.topology, dict(profile.fabric), intra,
                           nvls=layout.system.scale_up.nvls, sharp=bool(cfg.get("sharp", False)),
                           max_channels=channels, arch=layout.system.gpu_spec.arch)
        self._fabrics: dict[int, tuple[simpy.Environment, Any]] = {}
        self._simulated: frozenset[int] | None = None
        self._times: dict[tuple, float] = {}
        self._choices: dict[tuple, Choice] = {}
        self._phases: dict[tuple, list] = {}        # flow plans (incidence lists) per op
        self._siblings: dict[tuple, list] = {}
        self._rate_cache: dict[tuple, np.ndarray] = {}

    def set_simulated_ranks(self, ranks: Iterable[int] | None) -> None:
        self._simulated = None if ranks is None else frozenset(ranks)
        for cache in (self._times, self._phases, self._siblings, self._rate_cache):
            cache.clear()

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
            self._fabrics.pop(id(env), None)
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
            entry = (env, Fabric(env, self.topology.cap, self._rate_cache, self.tolerance))
            self._fabrics[id(env)] = entry
        return entry[1]

    def collective(self, env: simpy.Environment, op: Collective) -> Generator:
        group = op.group
        if group.size <= 1 or op.bytes <= 0:
            return
        key = (op.kind, float(op.bytes), tuple(group.ranks))
        choice = self._choices.get(key)
        if choice is None:
            choice = self._choices[key] = self.choose(op.kind, op.bytes, group)
        yield env.timeout(choice.latency_s)
        phases = self._phases.get(key)
        if phases is None:
            phases = self._phases[key] = self._prepare(choice, *key)
        fabric = self.fabric(env)
        for i, ph in enumerate(phases):
            yield fabric.start(*ph, key=key + (i,))

    def p2p(self, env: simpy.Environment, src: int, dst: int, nbytes: float) -> Generator:
        yield from self.collective(env, Collective("sendrecv", nbytes, CommGroup((src, dst))))

    def _prepare(self, choice: Choice, kind: str, nbytes: float, ranks: tuple[int, ...]):
        """Per phase, the flows of the group and its siblings as one incidence list.

        Flows with the same path and size become one flow of that weight: max-min gives
        identical flows identical rates, so this is exact (ring channels whose ECMP hashes
        agree, intra-domain flows of siblings that share a pair of vertices).
        """
        groups = [ranks] + self.siblings(ranks)
        plans = [self.tuner.plan(choice, kind, nbytes, g) for g in groups]
        topo, out = self.topology, []
        spray = topo.routing == "spray"
        for i in range(len(plans[0])):
            merged: dict[tuple, list] = {}
            for plan in plans:
                for u, v, b, salt in plan[i]:
                    if b <= 0:
                        continue
                    path, frac = topo.spread_v(u, v) if spray else (topo.route_v(u, v, salt), None)
                    k = (path.tobytes(), b)
                    if k in merged:
                        merged[k][3] += 1.0
                    else:
                        merged[k] = [path, frac, b * choice.wire_factor, 1.0]
            flows = list(merged.values())
            lens = np.fromiter((len(f[0]) for f in flows), dtype=np.int64, count=len(flows))
            if lens.sum():
                links = np.concatenate([f[0] for f in flows]).astype(np.int64)
                coef = np.concatenate([np.ones(len(f[0])) if f[1] is None else f[1] for f in flows])
            else:
                links, coef = np.zeros(0, np.int64), np.zeros(0)
            out.append((np.repeat(np.arange(len(flows)), lens), links,
                        np.array([f[2] for f in flows], dtype=float),
                        np.array([f[3] for f in flows], dtype=float), coef))
        return out

    def siblings(self, ranks: tuple[int, ...]) -> list[tuple[int, ...]]:
        """Unsimulated translates of the group that load the same links (see module doc)."""
        if self._simulated is None or len(ranks) < 2:
            return []
        hit = self._siblings.get(ranks)
        if hit is None:
            hit = self._siblings[ranks] = self._find_siblings(ranks)
        return hit

    def _find_siblings(self, ranks: tuple[int, ...]) -> list[tuple[int, ...]]:
        world, dom = self.layout.world_size, self.topology.domain
        sim = np.asarray(sorted(self._simulated), dtype=np.int64)
        owner = np.maximum(np.searchsorted(sim, np.arange(world), "right") - 1, 0)
        is_sim = np.zeros(world, bool)
        is_sim[sim[sim < world]] = True
        in_g = np.zeros(world, bool)
        g = np.asarray(ranks, dtype=np.int64)
        in_g[g] = True
        offs = np.arange(-int(g.min()), world - int(g.max()))
        offs = offs[offs != 0]
        keep = []
        step = max(1, (1 << 20) // len(g))          # bound the offsets x ranks matrix
        for lo in range(0, len(offs), step):
            o = offs[lo:lo + step]
            t = o[:, None] + g[None, :]
            ok = (owner[t] == owner[g]).all(1) & ~is_sim[t].any(1) & ~in_g[t].any(1)
            keep.append(o[ok])
        doms = {r // dom for r in ranks}
        spans = len(doms) > 1
        out = []
        for off in np.concatenate(keep).tolist() if keep else []:
            cand = tuple(r + off for r in ranks)
            if spans or {r // dom for r in cand} & doms:
                out.append(cand)
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
