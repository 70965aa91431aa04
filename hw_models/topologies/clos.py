"""Scale-out Clos networks: rail-optimized and plain fat-trees (2 or 3 tiers), multi-plane.

Each node's NICs (one per GPU per rail on DGX-class systems) attach to leaf switches.
Rail-optimized: NIC r of every node goes to rail r's leaves, so same-rail traffic stays
one switch away (NVIDIA DGX SuperPOD reference architecture). Plain fat-tree: all NICs
of a node share leaves in order. ``leaf_down`` ports face the NICs; a leaf has
ceil(leaf_down / oversubscription) uplinks, each at the NIC port speed, so
oversubscription is down:up capacity at that tier. Three tiers group ``pod_leaves``
leaves into a pod with its own aggregation switches, oversubscribed by the second entry
of ``oversubscription``. ``planes`` > 1 splits every NIC into that many ports, each on
an independent copy of the fabric (multi-plane, as in Alibaba HPN / Meta's
RoCE clusters); ECMP spreads flows over the planes.
"""

from __future__ import annotations

import math

from hw_models.errors import ClusterSimError
from hw_models.topology import GB, SCALE_OUT, US, Context, GraphBuilder, register


def _oversub(ctx: Context, tiers: int) -> list[float]:
    raw = ctx.cfg.get("oversubscription", 1.0)
    vals = [float(x) for x in (raw if isinstance(raw, list | tuple) else [raw])]
    if not vals or min(vals) < 1.0:
        raise ClusterSimError(f"cluster.network.oversubscription must be >= 1 (down:up), got {raw}")
    return (vals + [1.0] * tiers)[:tiers]


def _nics(b: GraphBuilder, ctx: Context) -> list[tuple[int, int, int, float]]:
    """NIC vertices as (vertex, rail, node, bytes/s); GPU->NIC over PCIe."""
    s = ctx.system
    gbps = float(ctx.cfg.get("nic_gbps", s.nic_gbps))
    if s.nics_per_node < 1 or gbps <= 0:
        raise ClusterSimError(f"system has no scale-out NICs (nics_per_node={s.nics_per_node}, "
                              f"nic_gbps={gbps}); use one node or add NICs")
    per_gpu = max(1, s.nics_per_node // s.gpus_per_node)   # several NICs per GPU bond into one
    n_nics = min(s.nics_per_node, s.gpus_per_node)
    bw = gbps / 8 * GB * per_gpu
    out = []
    for node in range(ctx.nodes):
        verts = [b.vertex("nic") for _ in range(n_nics)]
        for g in range(s.gpus_per_node):
            nic = g * n_nics // s.gpus_per_node
            b.link(ctx.gpu_vertex[node * s.gpus_per_node + g], verts[nic],
                   max(bw, ctx.get("pcie_gb_s") * GB), ctx.get("pcie_hop_latency_us") * US / 2,
                   "pcie")
        out += [(v, i, node, bw) for i, v in enumerate(verts)]
    return out


def _leaves(b: GraphBuilder, nics, leaf_down: int, rail: bool, port: float, lat: float) -> list[int]:
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (v, r, node, _) in enumerate(nics):
        key = (r, node // leaf_down) if rail else (0, i // leaf_down)
        groups.setdefault(key, []).append(v)
    leaves = []
    for key in sorted(groups):
        leaf = b.vertex("leaf")
        for v in groups[key]:
            b.link(v, leaf, port, lat, "network")
        leaves.append(leaf)
    return leaves


def _uplinks(b: GraphBuilder, lower: list[int], n_up: int, port: float, lat: float, kind: str
             ) -> list[int]:
    """Every switch of ``lower`` gets one port to each of ``n_up`` new switches."""
    upper = [b.vertex(kind) for _ in range(n_up)]
    for sw in lower:
        for u in upper:
            b.link(sw, u, port, lat, "network")
    return upper


def _plane(b: GraphBuilder, ctx: Context, nics, rail: bool, port: float) -> None:
    tiers = int(ctx.cfg.get("tiers", 2))
    if tiers not in (2, 3):
        raise ClusterSimError(f"cluster.network.tiers must be 2 or 3, got {tiers}")
    os_ = _oversub(ctx, tiers)
    half = int(ctx.get("switch_radix")) // 2
    leaf_down = int(ctx.cfg.get("leaf_down", half))
    lat = ctx.get("switch_latency_us") * US
    leaves = _leaves(b, nics, leaf_down, rail, port, lat)
    up1 = max(1, math.ceil(leaf_down / os_[0]))
    if tiers == 2:
        _uplinks(b, leaves, up1, port, lat, "spine")
        return
    pod = int(ctx.cfg.get("pod_leaves", half))
    up2 = max(1, math.ceil(pod / os_[1]))
    cores = [b.vertex("core") for _ in range(up1 * up2)]
    for p in range(0, len(leaves), pod):
        aggs = _uplinks(b, leaves[p:p + pod], up1, port, lat, "agg")
        for u, agg in enumerate(aggs):
            for j in range(up2):
                b.link(agg, cores[u * up2 + j], port, lat, "network")


def _clos(b: GraphBuilder, ctx: Context, rail: bool, planes: int) -> None:
    if planes < 1:
        raise ClusterSimError(f"cluster.network.planes must be >= 1, got {planes}")
    if ctx.world <= ctx.domain and ctx.system.nics_per_node < 1:
        return   # one scale-up domain and no NICs (a TPU v6e pod): nothing to build
    nics = _nics(b, ctx)
    if planes == 1:
        _plane(b, ctx, nics, rail, nics[0][3])
        return
    for _ in range(planes):  # each NIC port: its own vertex on its own plane
        ports = []
        for v, r, node, bw in nics:
            p = b.vertex("nic-port")
            b.link(v, p, bw / planes, 0.0, "network")
            ports.append((p, r, node, bw / planes))
        _plane(b, ctx, ports, rail, bw / planes)


@register(SCALE_OUT, "rail-optimized")
def rail_optimized(b: GraphBuilder, ctx: Context) -> None:
    _clos(b, ctx, rail=True, planes=int(ctx.cfg.get("planes", 1)))


@register(SCALE_OUT, "fat-tree")
def fat_tree(b: GraphBuilder, ctx: Context) -> None:
    _clos(b, ctx, rail=False, planes=int(ctx.cfg.get("planes", 1)))


@register(SCALE_OUT, "multi-plane")
def multi_plane(b: GraphBuilder, ctx: Context) -> None:
    _clos(b, ctx, rail=True, planes=int(ctx.cfg.get("planes", 2)))


@register(SCALE_OUT, "none")
def no_network(b: GraphBuilder, ctx: Context) -> None:
    if ctx.world > ctx.domain:
        raise ClusterSimError(f"cluster.network.topology 'none' needs one scale-up domain, "
                              f"got {ctx.world} GPUs in domains of {ctx.domain}")
