"""Topologies: graphs of GPUs, NICs, switches and directed links, with ECMP routing.

A ``Topology`` holds directed links as parallel numpy arrays (``src``, ``dst``,
``cap`` in bytes/s, ``lat`` in seconds, ``cls`` the link class ``nvlink|pcie|network``)
and maps each rank to a vertex. ``route(a, b, salt)`` returns the link ids of one
shortest path; where several shortest next hops exist (a fat-tree's uplinks, a torus'
dimensions, several planes) one is chosen by a deterministic hash of
(src, dst, vertex, salt): ECMP as switches do it, reproducible run to run.

Builders live one per file in ``hw_models/topologies/`` and register by name in
``SCALE_UP`` (the fabric inside a scale-up domain, keyed by the catalog's
``scale_up.kind``) or ``SCALE_OUT`` (the network between domains, keyed by the
scenario's ``cluster.network.topology``). Registries refuse duplicates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from hw_models.catalog import SystemSpec
from hw_models.errors import ClusterSimError
from hw_models.mesh_rings import MESH_KINDS
from hw_models.routing import ShortestPaths, batch_routes
from hw_models.yamlio import read_packaged

GB = 1e9
US = 1e-6


@cache
def fabric_defaults() -> dict[str, float]:
    """Default fabric numbers (hw_models/data/fabric.yaml, each with its source)."""
    return {k: float(v["value"]) for k, v in read_packaged("hw_models", "data", "fabric.yaml").items()}


@dataclass
class GraphBuilder:
    """Accumulates vertices and bidirectional links, then freezes into a Topology."""
    kinds: list[str] = field(default_factory=list)
    links: list[tuple[int, int, float, float, str]] = field(default_factory=list)

    def vertex(self, kind: str) -> int:
        self.kinds.append(kind)
        return len(self.kinds) - 1

    def link(self, a: int, b: int, bytes_s: float, lat_s: float, cls: str) -> None:
        """Both directions, each with the full per-direction bandwidth."""
        self.links.append((a, b, bytes_s, lat_s, cls))
        self.links.append((b, a, bytes_s, lat_s, cls))


@dataclass(frozen=True)
class Context:
    """What a builder needs: the system, node count, ranks' vertices, scenario keys."""
    system: SystemSpec
    nodes: int
    cfg: dict[str, Any]
    gpu_vertex: list[int]

    @property
    def world(self) -> int:
        return self.nodes * self.system.gpus_per_node

    @property
    def domain(self) -> int:
        return min(self.system.scale_up.domain_gpus, self.world)

    def get(self, key: str) -> float:
        return float(self.cfg.get(key, fabric_defaults().get(key, 0.0)))


Builder = Callable[[GraphBuilder, Context], None]
SCALE_UP: dict[str, Builder] = {}
SCALE_OUT: dict[str, Builder] = {}
# Scale-out builders that replace the scale-up fabric (a TPU-style torus links GPUs directly).
REPLACES_SCALE_UP: set[str] = set()


def register(table: dict[str, Builder], name: str, replaces_scale_up: bool = False):
    def deco(fn: Builder) -> Builder:
        if name in table:
            raise ValueError(f"topology builder {name!r} registered twice")
        table[name] = fn
        if replaces_scale_up:
            REPLACES_SCALE_UP.add(name)
        return fn
    return deco


def _mix(*xs: int) -> int:
    """splitmix64 over the inputs: a fixed, well-spread hash (Python's own is salted for str)."""
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h


class Topology:
    def __init__(self, name: str, b: GraphBuilder, gpu_vertex: list[int], domain: int,
                 gpus_per_node: int):
        self.name, self.domain, self.gpus_per_node = name, domain, gpus_per_node
        self.kinds = b.kinds
        arr = list(zip(*b.links, strict=True)) if b.links else [(), (), (), (), ()]
        self.src = np.asarray(arr[0], dtype=np.int64)
        self.dst = np.asarray(arr[1], dtype=np.int64)
        self.cap = np.asarray(arr[2], dtype=float)
        self.lat = np.asarray(arr[3], dtype=float)
        self.cls = np.asarray(arr[4], dtype=object)
        self.gpu_vertex = np.asarray(gpu_vertex, dtype=np.int64)
        nv = len(self.kinds)
        order = np.lexsort((self.dst, self.src))
        self._out_links = order
        self._out_ptr = np.searchsorted(self.src[order], np.arange(nv + 1))
        self._dist: dict[int, np.ndarray] = {}
        self._rev_csr = None
        self._paths = ShortestPaths(nv, self.src, self.dst, order, self._out_ptr)
        self._routes: dict[tuple[int, int, int], np.ndarray] = {}
        self._spread: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.routing = "ecmp"
        self.full_mesh = False      # scale-up domains are full meshes (hw_models/mesh_rings.py)
        self.torus_ndims = 0        # scale-up domains are 2D/3D tori (hw_models/torus_rings.py)

    @property
    def n_gpus(self) -> int:
        return len(self.gpu_vertex)

    @property
    def n_links(self) -> int:
        return len(self.src)

    @property
    def _rev(self):
        """Reversed graph: distance *to* a destination is a BFS from it on reversed edges
        (scipy is imported here, only for spray routing)."""
        from scipy.sparse import csr_matrix
        nv = len(self.kinds)
        return csr_matrix((np.ones(len(self.src)), (self.dst, self.src)), shape=(nv, nv))

    def _dist_to(self, v: int) -> np.ndarray:
        d = self._dist.get(v)
        if d is None:
            from scipy.sparse.csgraph import shortest_path
            if self._rev_csr is None:
                self._rev_csr = self._rev
            d = shortest_path(self._rev_csr, unweighted=True, indices=v)
            self._dist[v] = d
        return d

    def route(self, a: int, b: int, salt: int = 0) -> np.ndarray:
        """Link ids of one shortest path from rank a to rank b (ECMP by hash)."""
        return self.route_v(int(self.gpu_vertex[a]), int(self.gpu_vertex[b]), salt)

    def route_v(self, u: int, v: int, salt: int = 0) -> np.ndarray:
        """Link ids of one shortest path between two vertices (ECMP by hash)."""
        key = (u, v, salt)
        path = self._routes.get(key)
        if path is None:
            path = self._walk(u, v, u, v, salt)
            self._routes[key] = path
        return path

    def routes_v(self, us: np.ndarray, vs: np.ndarray, salts: np.ndarray) -> list[np.ndarray]:
        """``route_v`` of many vertex pairs, the missing ones found in one batch."""
        keys = list(zip(us.tolist(), vs.tolist(), salts.tolist(), strict=True))
        missing = [i for i, k in enumerate(keys) if k not in self._routes]
        if missing:
            m = np.asarray(missing)
            got, bad = batch_routes(self._paths, len(self.kinds), us[m], vs[m], salts[m])
            if bad.any():
                i = missing[int(np.argmax(bad))]
                raise ClusterSimError(f"topology {self.name!r}: no path from rank {keys[i][0]} "
                                      f"to rank {keys[i][1]}")
            for i, path in zip(missing, got, strict=True):
                self._routes[keys[i]] = path
        return [self._routes[k] for k in keys]

    def spread_v(self, u: int, v: int) -> tuple[np.ndarray, np.ndarray]:
        """Links from vertex u to v and the fraction of a flow on each, when every switch
        splits it evenly over all its shortest next hops: per-packet spraying / adaptive
        routing (InfiniBand AR, Spectrum-X) as a fluid, with no hash collisions."""
        hit = self._spread.get((u, v))
        if hit is not None:
            return hit
        dist = self._dist_to(v)
        if not np.isfinite(dist[u]):
            raise ClusterSimError(f"topology {self.name!r}: no path from vertex {u} to {v}")
        links: list[int] = []
        frac: list[float] = []
        layer = {u: 1.0}
        while layer:
            nxt: dict[int, float] = {}
            for x, f in layer.items():
                if x == v:
                    continue
                out = self._out_links[self._out_ptr[x]:self._out_ptr[x + 1]]
                hops = out[dist[self.dst[out]] == dist[x] - 1]
                share = f / len(hops)
                for link in hops.tolist():
                    links.append(link)
                    frac.append(share)
                    y = int(self.dst[link])
                    nxt[y] = nxt.get(y, 0.0) + share
            layer = nxt
        hit = (np.asarray(links, dtype=np.int64), np.asarray(frac))
        self._spread[(u, v)] = hit
        return hit

    def scale_up_switch(self, rank: int) -> int | None:
        """The NVSwitch / NVL switch vertex of a rank's domain, if it has one."""
        u = int(self.gpu_vertex[rank])
        for link in self._out_links[self._out_ptr[u]:self._out_ptr[u + 1]]:
            if self.kinds[int(self.dst[link])] in ("nvswitch", "nvl-switch"):
                return int(self.dst[link])
        return None

    def leaf_of(self, rank: int) -> int | None:
        """The first network switch on the rank's way out (for in-network reduction)."""
        u = int(self.gpu_vertex[rank])
        for _ in range(3):
            nxt = [int(self.dst[k]) for k in self._out_links[self._out_ptr[u]:self._out_ptr[u + 1]]]
            leaf = [v for v in nxt if self.kinds[v] == "leaf"]
            if leaf:
                return leaf[0]
            nic = [v for v in nxt if self.kinds[v] in ("nic", "nic-port")]
            if not nic:
                return None
            u = nic[0]
        return None

    def _walk(self, u: int, v: int, a: int, b: int, salt: int) -> np.ndarray:
        found = self._paths.search(u, v)     # hw_models/routing.py: no full BFS per destination
        if found is None:
            raise ClusterSimError(f"topology {self.name!r}: no path from rank {a} to rank {b}")
        d, r_u = found
        hops = []
        while u != v:
            nxt = self._paths.next_hops(u, len(hops), d, r_u)
            link = int(nxt[_mix(a, b, u, salt) % len(nxt)]) if len(nxt) > 1 else int(nxt[0])
            hops.append(link)
            u = int(self.dst[link])
        return np.asarray(hops, dtype=np.int64)

    def bottleneck(self, a: int, b: int) -> float:
        r = self.route(a, b)
        return float(self.cap[r].min()) if len(r) else float("inf")

    def summary(self) -> dict[str, Any]:
        kinds, counts = np.unique(np.asarray(self.kinds), return_counts=True)
        return {"name": self.name, "gpus": self.n_gpus, "links": self.n_links,
                "vertices": dict(zip(kinds.tolist(), counts.tolist(), strict=True))}


NETWORK_KEYS = {"topology", "oversubscription", "nic_gbps", "tiers", "leaf_down", "pod_leaves",
                "planes", "dims", "link_gb_s", "pcie_gb_s", "pcie_hop_latency_us",
                "switch_radix", "switch_latency_us", "sharp", "routing"}
ROUTING = ("ecmp", "spray")


def build_topology(system: SystemSpec, nodes: int, network: dict[str, Any] | None = None
                   ) -> Topology:
    """The cluster's graph: ``nodes`` systems joined by ``network['topology']``.

    ``network`` keys (all optional): topology (rail-optimized | fat-tree | torus |
    multi-plane | none; default rail-optimized when nodes > 1), oversubscription (a number
    for the leaf tier or a list per tier), nic_gbps, tiers (2|3), leaf_down, pod_leaves,
    planes, dims (torus), link_gb_s (torus link), pcie_gb_s, routing (ecmp: one
    hashed path per flow, as static ECMP; spray: every flow split evenly over all
    shortest paths, as adaptive routing; used by the flow network).
    """
    from hw_models import topologies  # noqa: F401  (registers the builders)

    cfg = dict(network or {})
    bad = sorted(set(cfg) - NETWORK_KEYS)
    if bad:
        raise ClusterSimError(f"cluster.network: unknown key(s) {bad}; allowed: {sorted(NETWORK_KEYS)}")
    if nodes < 1:
        raise ClusterSimError(f"cluster.nodes must be >= 1, got {nodes}")
    kind = str(cfg.get("topology") or ("rail-optimized" if nodes > 1 else "none"))
    if kind not in SCALE_OUT:
        raise ClusterSimError(f"unknown cluster.network.topology {kind!r}; allowed: {sorted(SCALE_OUT)}")
    b = GraphBuilder()
    ctx = Context(system, nodes, cfg, [b.vertex("gpu") for _ in range(nodes * system.gpus_per_node)])
    if kind not in REPLACES_SCALE_UP:
        up = system.scale_up.kind
        if up not in SCALE_UP:
            raise ClusterSimError(f"no scale-up builder for {up!r}; allowed: {sorted(SCALE_UP)}")
        SCALE_UP[up](b, ctx)
    routing = str(cfg.get("routing", "ecmp"))
    if routing not in ROUTING:
        raise ClusterSimError(f"cluster.network.routing must be one of {list(ROUTING)}, got {routing!r}")
    SCALE_OUT[kind](b, ctx)
    topo = Topology(kind, b, ctx.gpu_vertex, ctx.domain, system.gpus_per_node)
    topo.routing = routing
    topo.full_mesh = system.scale_up.kind in MESH_KINDS and kind not in REPLACES_SCALE_UP
    if system.scale_up.kind == "ici-torus" and kind not in REPLACES_SCALE_UP:
        topo.torus_ndims = system.scale_up.torus_dims or 3
    return topo
