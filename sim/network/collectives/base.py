"""What a collective algorithm is: flows per phase and step counts for the latency model.

An algorithm turns (kind, bytes, ranks) on a topology into a ``Plan``: phases run one
after another, the flows inside a phase run at the same time and share links. Flows
are (source vertex, destination vertex, bytes, salt); the salt spreads channels over
ECMP paths. ``steps`` gives (intra-domain, inter-domain) hop counts of NCCL's latency
formula (nccl src/graph/tuning.cc).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from hw_models.errors import ClusterSimError
from hw_models.mesh_rings import mesh_rings, ring_starts
from hw_models.topology import Topology
from hw_models.torus_rings import torus_dims, torus_rings

Flow = tuple[int, int, float, int]
Plan = list[list[Flow]]


@dataclass(frozen=True)
class CollCtx:
    kind: str
    nbytes: float
    ranks: tuple[int, ...]
    topo: Topology
    max_channels: int = 8
    sharp: bool = False
    nvls: bool = False

    @property
    def n(self) -> int:
        return len(self.ranks)

    def v(self, rank: int) -> int:
        return int(self.topo.gpu_vertex[rank])

    @cached_property
    def domains(self) -> list[list[int]]:
        """The group's ranks per scale-up domain, domains in order of first rank."""
        per: dict[int, list[int]] = {}
        for r in self.ranks:
            per.setdefault(r // self.topo.domain, []).append(r)
        return list(per.values())

    @property
    def n_domains(self) -> int:
        return len(self.domains)

    @property
    def local(self) -> int:
        """Ranks per domain (max, groups are normally balanced)."""
        return max(len(d) for d in self.domains)

    @cached_property
    def mesh_rings(self) -> tuple[tuple[int, ...], ...]:
        """On a full-mesh or torus scale-up domain, the link-disjoint rings over one
        domain's ranks (local indices, hw_models/mesh_rings.py, hw_models/torus_rings.py);
        empty on switched fabrics."""
        if self.local < 2:
            return ()
        if getattr(self.topo, "full_mesh", False):
            return mesh_rings(self.local)
        ndims = getattr(self.topo, "torus_ndims", 0)
        if not ndims:
            return ()
        dom = self.topo.domain
        return torus_rings(torus_dims(dom, ndims), tuple(r % dom for r in self.domains[0]))

    @property
    def channels(self) -> int:
        """Across domains one channel per local rank (each drives its own NIC/rail); inside
        one full-mesh or torus domain one channel per link-disjoint ring (RCCL's xGMI
        rings; the bidirectional rings along a torus' dimensions)."""
        if self.n_domains > 1:
            return max(1, min(self.max_channels, self.local))
        return max(1, len(self.mesh_rings))


@dataclass(frozen=True)
class Algorithm:
    name: str
    kinds: frozenset[str]
    protos: tuple[str, ...]
    plan: Callable[[CollCtx], Plan]
    steps: Callable[[CollCtx], tuple[float, float]]
    available: Callable[[CollCtx], bool] = lambda ctx: True
    tuned: bool = True          # part of NCCL's own choice set (the tuner may pick it)
    latency_key: str = ""       # row of the NCCL latency tables (defaults to name)

    @property
    def lat_key(self) -> str:
        return self.latency_key or self.name


ALGORITHMS: dict[str, Algorithm] = {}


def register(algo: Algorithm) -> Algorithm:
    if algo.name in ALGORITHMS:
        raise ValueError(f"collective algorithm {algo.name!r} registered twice")
    ALGORITHMS[algo.name] = algo
    return algo


def get(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise ClusterSimError(f"unknown collective algorithm {name!r}; allowed: {sorted(ALGORITHMS)}")
    return ALGORITHMS[name]


def ring_order(ctx: CollCtx, c: int) -> list[int]:
    """Channel c's ring: rotated by c inside each domain, every other domain reversed, so
    the ring leaves one domain and enters the next at the same local index (same rail).
    On a full mesh the path inside a domain follows the channel's own disjoint ring
    (``CollCtx.mesh_rings``), entered where no other channel enters or leaves
    (``ring_starts``), so every channel keeps its own NIC."""
    rings = ctx.mesh_rings
    order: list[int] = []
    for d, ranks in enumerate(ctx.domains):
        k = len(ranks)
        mesh = bool(rings) and len(rings[0]) == k
        cyc = rings[c % len(rings)] if mesh else tuple(range(k))
        start = ring_starts(k, ctx.channels, rings)[c] if mesh else c % k
        at = cyc.index(start)
        rot = [ranks[cyc[(at + i) % k]] for i in range(k)]
        order += rot[::-1] if d % 2 else rot
    return order
