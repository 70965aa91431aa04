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
and the contention-free rates are cached per (op, bytes, ranks, algorithm) and shared by
the band's corner networks; routes of a phase are found in one batch
(hw_models/routing.py); the fabric re-solves only the connected component of flows a
start or an end touches, and a component seen before not at all (sim/network/fabric.py).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any

import numpy as np
import simpy

from hw_models.profile import Profile
from hw_models.routing import unique_ints
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
                 topology_cfg: dict[str, Any] | None = None, bw_scale: float = 1.0):
        """``bw_scale`` multiplies every link's capacity (AnalyticalNetwork's knob)."""
        cfg = {k: v for k, v in (topology_cfg or {}).items() if v is not None}
        self.algo, self.proto = cfg.pop("algo", None), cfg.pop("proto", None)
        channels = int(cfg.pop("channels", 8))
        self.tolerance = float(cfg.pop("tolerance", TOLERANCE))
        cfg.setdefault("nic_gbps", layout.nic_gbps)
        if layout.oversubscription != 1.0:
            cfg.setdefault("oversubscription", layout.oversubscription)
        self.layout, self.profile = layout, profile
        self.topology = build_topology(layout.system, layout.nodes, cfg)
        self.bw_scale = bw_scale
        if bw_scale != 1.0:                  # a fresh graph per network: scaled in place
            self.topology.cap = self.topology.cap * bw_scale
        intra = "pcie" if layout.system.scale_up.kind == "pcie" else "nvlink"
        self.tuner = Tuner(self.topology, dict(profile.fabric), intra,
                           nvls=layout.system.scale_up.nvls, sharp=bool(cfg.get("sharp", False)),
                           max_channels=channels, arch=layout.system.gpu_spec.arch,
                           scale_up_bw=layout.system.scale_up_bw,
                           nic_bw_per_gpu=layout.nic_bw_per_gpu / layout.oversubscription)
        self._fabrics: dict[int, tuple[simpy.Environment, Any]] = {}
        self._simulated: frozenset[int] | None = None
        self._times: dict[tuple, float] = {}
        self._choices: dict[tuple, Choice] = {}
        self._phases: dict[int, list] = {}          # flow plans (incidence lists) per plan id
        self._plan_ids: dict[tuple, int] = {}       # (kind, bytes, ranks, algorithm) -> id
        self._op_plans: dict[int, tuple] = {}       # id(op) -> (op, (choice, plan id, key))
        self._p2p_plans: dict[tuple, tuple | None] = {}   # (src, dst, bytes) -> the same
        self._siblings: dict[tuple, list] = {}
        self._rate_cache: dict[tuple, tuple] = {}    # sim/network/fabric.py: rates and flags
        self._flow_sets: dict[tuple, Any] = {}      # sim/network/fabric.py: Flows per plan key
        self._vertex_rank: np.ndarray | None = None
        self._last_fabric: tuple | None = None

    def with_profile(self, profile: Profile) -> FlowNetwork:
        """The same fabric with another profile's collective curves (a band corner): the
        topology, its routes and the symmetric-peer groups are shared, the choices and
        flow plans (which depend on the curves) are not."""
        net = object.__new__(FlowNetwork)
        net.__dict__.update(self.__dict__)
        net.profile = profile
        net.tuner = Tuner(self.topology, dict(profile.fabric), self.tuner.intra_class,
                          nvls=self.tuner.nvls, sharp=self.tuner.sharp,
                          max_channels=self.tuner.max_channels, arch=self.tuner.arch,
                          scale_up_bw=self.tuner.scale_up_bw,
                          nic_bw_per_gpu=self.tuner.nic_bw_per_gpu)
        net.tuner._spb = self.tuner._spb     # contention-free time per byte: topology only
        net._fabrics, net._times, net._choices, net._last_fabric = {}, {}, {}, None
        net._op_plans, net._p2p_plans = {}, {}
        return net

    def set_simulated_ranks(self, ranks: Iterable[int] | None) -> None:
        self._simulated = None if ranks is None else frozenset(ranks)
        for cache in (self._times, self._phases, self._plan_ids, self._op_plans, self._siblings,
                      self._rate_cache, self._p2p_plans, self._flow_sets):
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
            self._last_fabric = None
            self._times[key] = env.now
        return self._times[key]

    def p2p_time(self, src: int, dst: int, nbytes: float) -> float:
        if nbytes <= 0 or src == dst:
            return 0.0
        return self.collective_time("sendrecv", nbytes, CommGroup((src, dst)))

    def fabric(self, env: simpy.Environment):
        last = self._last_fabric
        if last is not None and last[0] is env:
            return last[1]
        from sim.network.fabric import Fabric
        entry = self._fabrics.get(id(env))
        if entry is None or entry[0] is not env:
            entry = (env, Fabric(env, self.topology.cap, self._rate_cache, self.tolerance,
                                 self._flow_sets))
            self._fabrics[id(env)] = entry
        self._last_fabric = entry
        return entry[1]

    def collective(self, env: simpy.Environment, op: Collective) -> Generator:
        # A graph's collectives repeat (every microbatch plays the same block ops): what
        # the transfer needs is memoised per op object, which the entry keeps alive.
        memo = self._op_plans.get(id(op))
        if memo is None or memo[0] is not op:
            memo = self._op_plans[id(op)] = (op, self._plan(op.kind, op.bytes, op.group))
        if memo[1] is not None:
            yield from self._transfer(env, *memo[1])

    def _plan(self, kind: str, nbytes: float, group: CommGroup) -> tuple | None:
        """(the tuner's choice, the flow plan's id, its key), or None: nothing to send."""
        if group.size <= 1 or nbytes <= 0:
            return None
        key = (kind, float(nbytes), tuple(group.ranks))
        choice = self._choices.get(key)
        if choice is None:
            choice = self._choices[key] = self.choose(kind, nbytes, group)
        pkey = key + (choice.algo,)          # the flows depend on the algorithm only
        pid = self._plan_ids.get(pkey)
        if pid is None:                      # a small id: cheap to hash in the rate cache
            pid = self._plan_ids[pkey] = len(self._plan_ids)
        return choice, pid, pkey

    def _transfer(self, env: simpy.Environment, choice: Choice, pid: int, pkey: tuple
                  ) -> Generator:
        yield env.timeout(choice.latency_s)
        phases = self._phases.get(pid)
        if phases is None:
            phases = self._phases[pid] = self._prepare(choice, *pkey[:3])
        fabric = self.fabric(env)
        wf = choice.wire_factor
        for i, (row, links, nbytes, weight, coef, ulinks) in enumerate(phases):
            yield fabric.start(row, links, nbytes * wf, weight, coef, (pid, i), ulinks)

    def p2p(self, env: simpy.Environment, src: int, dst: int, nbytes: float) -> Generator:
        key = (src, dst, nbytes)            # every microbatch sends the same transfers
        plan = self._p2p_plans.get(key, self)
        if plan is self:
            plan = self._p2p_plans[key] = self._plan("sendrecv", nbytes, CommGroup((src, dst)))
        if plan is not None:
            yield from self._transfer(env, *plan)

    def _prepare(self, choice: Choice, kind: str, nbytes: float, ranks: tuple[int, ...]):
        """Per phase, the flows of the group and its siblings as one incidence list, with
        payload bytes (the protocol's wire factor is applied when a phase starts).

        Flows with the same path and size become one flow of that weight: max-min gives
        identical flows identical rates, so this is exact (ring channels whose ECMP hashes
        agree, intra-domain flows of siblings that share a pair of vertices).
        """
        topo, out = self.topology, []
        spray = topo.routing == "spray"
        for u, v, salt, size in self._phase_flows(choice, kind, nbytes, ranks):
            merged: dict[tuple, list] = {}
            if spray:
                routes = [topo.spread_v(a, b) for a, b in zip(u.tolist(), v.tolist(), strict=True)]
            else:                                   # all of the phase's routes in one batch
                routes = [(r, None) for r in topo.routes_v(u, v, salt)]
            for (path, frac), b in zip(routes, size.tolist(), strict=True):
                k = (path.tobytes(), b)
                if k in merged:
                    merged[k][3] += 1.0
                else:
                    merged[k] = [path, frac, b, 1.0]
            flows = list(merged.values())
            lens = np.fromiter((len(f[0]) for f in flows), dtype=np.int64, count=len(flows))
            if lens.sum():
                links = np.concatenate([f[0] for f in flows]).astype(np.int64)
                coef = np.ones(len(links)) if not spray else np.concatenate([f[1] for f in flows])
            else:
                links, coef = np.zeros(0, np.int64), np.zeros(0)
            out.append((np.repeat(np.arange(len(flows)), lens), links,
                        np.array([f[2] for f in flows], dtype=float),
                        np.array([f[3] for f in flows], dtype=float), coef, unique_ints(links)))
        return out

    def _phase_flows(self, choice: Choice, kind: str, nbytes: float, ranks: tuple[int, ...]
                     ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Per phase, (source vertex, destination vertex, salt, bytes) of the flows of the
        group and then of each sibling, flows of size 0 left out.

        A sibling whose ranks all move by the same number of scale-up domains splits over
        domains as the group does, so its plan is the group's moved by the rank offset
        (tests/sim/network/test_flow_speed_helpers.py checks this for every algorithm);
        plans with flows to a switch (NVLS, SHARP) are built per sibling."""
        base = self.tuner.plan(choice, kind, nbytes, ranks)
        arrays = [[_flow_arrays(ph)] for ph in base]
        rank_of = self._rank_of()
        moved = [(rank_of[a[0]], rank_of[a[1]]) for (a,) in arrays]
        movable = all((r >= 0).all() for pair in moved for r in pair)
        g, dom, gv = np.asarray(ranks), self.topology.domain, self.topology.gpu_vertex
        sibs = self.siblings(ranks)
        offs = np.array([sib[0] for sib in sibs], np.int64) - ranks[0]
        shift = (g[None, :] + offs[:, None]) // dom - (g // dom)[None, :]
        if movable and len(sibs) and (shift == shift[:, :1]).all():
            # Every sibling is the group moved: all of them at once, sibling by sibling.
            for i, (ru, rv) in enumerate(moved):
                u, v, salt, size = arrays[i][0]
                arrays[i].append((gv[(ru[None, :] + offs[:, None]).ravel()],
                                  gv[(rv[None, :] + offs[:, None]).ravel()],
                                  np.tile(salt, len(sibs)), np.tile(size, len(sibs))))
            sibs, offs, shift = [], offs[:0], shift[:0]
        for sib, off, sh in zip(sibs, offs.tolist(), shift, strict=True):
            if movable and (sh == sh[0]).all():
                for i, (ru, rv) in enumerate(moved):
                    u, v, salt, size = arrays[i][0]
                    arrays[i].append((gv[ru + off], gv[rv + off], salt, size))
            else:
                for i, ph in enumerate(self.tuner.plan(choice, kind, nbytes, sib)):
                    arrays[i].append(_flow_arrays(ph))
        return [tuple(np.concatenate(col) for col in zip(*phase, strict=True))
                for phase in arrays]

    def _rank_of(self) -> np.ndarray:
        """Rank of each topology vertex (-1 for NICs and switches)."""
        if self._vertex_rank is None:
            self._vertex_rank = np.full(len(self.topology.kinds), -1, np.int64)
            self._vertex_rank[self.topology.gpu_vertex] = np.arange(self.topology.n_gpus)
        return self._vertex_rank

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
        # A shifted rank keeps its representative only inside that representative's block
        # [sim[k], sim[k+1]): the offsets that can qualify form one interval.
        k = owner[g]
        starts = sim.copy()
        starts[0] = 0                               # ranks below sim[0] stand in for it too
        ends = np.append(sim[1:], world)
        first = max(int((starts[k] - g).max()), -int(g.min()))
        last = min(int((ends[k] - g).min()), world - int(g.max()))
        offs = np.arange(first, last)
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


def _flow_arrays(phase: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A plan phase's flows (u, v, bytes, salt) with bytes > 0 as arrays (u, v, salt, bytes)."""
    kept = [f for f in phase if f[2] > 0]
    u = np.array([f[0] for f in kept], np.int64)
    v = np.array([f[1] for f in kept], np.int64)
    salt = np.array([f[3] for f in kept], np.int64)
    return u, v, salt, np.array([f[2] for f in kept], float)


def _disjoint(groups: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Keep translates that do not overlap an earlier one (each peer placed once)."""
    seen: set[int] = set()
    out = []
    for g in groups:
        if not seen.intersection(g):
            out.append(g)
            seen.update(g)
    return out
