"""Analytical (alpha-beta, no contention) collective and point-to-point costs.

A collective's time is ``latency + bus_bytes / (link_bw * eff(bus_bytes))`` with the
fitted per-link-class curve of the profile (``collectives.nvlink`` inside one scale-up
domain, ``collectives.nvlink_ring`` there for what an NVLS system runs as a ring,
``collectives.network`` across domains). ``bus_bytes`` follows nccl-tests'
bus-bandwidth definitions (../shared/reference/collectives/busbw_factors.csv).
Across domains the ring's inter-domain bandwidth is that of the NICs of the group's
ranks in one domain (one NIC per GPU per rail), capped by the scale-up bandwidth;
all-to-all cannot aggregate NICs (NCCL maintainers), so it gets one GPU's NIC share for
the bytes that leave the domain.
The scale-out ramp is read at the bytes each NIC carries, scaled to the group the curve
was fitted on (``nic_ramp_scale``: NCCL binds ring channels to NICs, so a one-NIC ring
pipelines 8x the bytes per channel of the 8-NIC fit ring at equal bus bytes); not for
all-to-all, whose send/recv channels are per peer.
The latency grows with the group as NCCL's does (ring steps, or the tree's log2(nodes)
for a small all_reduce; ``nccl_latency_us``) from the two-node group the curve was fitted on,
each tree level at NCCL's constant plus the curve's ``level_us`` (fitted where the curve's
sweeps span two node counts or more: the a100 curve on the echo 2- and 8-node logs).
Where NCCL runs that tree with LL, its chunks cross the network levels in turn
(store and forward, sim/network/collectives/tree_pipeline.py): ``tree_ll_hops`` extra
transfers of the bus bytes, each at the curve's fitted ``ll_hop_eff`` of the link.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from functools import lru_cache, partial

import simpy

from hw_models.catalog import SystemSpec
from hw_models.errors import ClusterSimError
from hw_models.mesh_rings import MESH_KINDS, mesh_group_bw
from hw_models.profile import CollectiveCurve, FabricCurve, Profile, builtin_names
from hw_models.torus_rings import torus_dims, torus_group_bw
from sim.network.collectives import nccl_model, tree_pipeline
from workloads.graph import Collective, CommGroup

# The A100 profiles' network curves are fitted on a two-node all_reduce sweep of 8 GPUs per
# node (echo 16-GPU nccl-tests log, calibration/build_profiles.py): their latency is that of
# the algorithm NCCL runs at small sizes on that group. A curve fitted on another group
# names it (``CollectiveCurve.fit_group``: h100, four nodes). RING_KINDS on other
# multi-node groups add NCCL's own latency difference (``nccl_latency_us``).
FIT_GROUP = ("all_reduce", 16, 2, 8)            # kind, GPUs, nodes, GPUs per node
RING_KINDS = frozenset({"all_reduce", "all_gather", "reduce_scatter", "broadcast", "reduce"})


def _ring_tree_us(kind: str, n: int, nodes: int, local: int) -> tuple[float, float | None]:
    """NCCL's LL latency of the ring and (all_reduce across nodes) of the tree, on its
    constants (``nccl_latency_us``); the tree None where NCCL has none."""
    c = nccl_model.constants()
    hw, base = c["hw_latency_us"], c["base_latency_us"]
    mult = 2 if kind == "all_reduce" else 1
    inter = mult * (nodes - 1)
    intra = mult * (n - 1) - inter
    intra_hw = hw["ring"]["nvlink"]["LL"]
    if nodes > 1:
        intra_hw = max(intra_hw, c["net_overhead_us"]["LL"])
    ring = base["ring"]["LL"] + intra * intra_hw + inter * hw["ring"]["network"]["LL"]
    if kind != "all_reduce" or nodes < 2:
        return ring, None
    return ring, nccl_model.tree_latency_us("LL", local, nodes)


def nccl_latency_us(kind: str, n: int, nodes: int, local: int, level_us: float = 0.0) -> float:
    """NCCL's latency of a collective over ``n`` ranks on ``nodes`` nodes (``local`` per
    node) with the LL protocol, the one it runs at small sizes (src/graph/tuning.cc, constants
    in sim/network/collectives/nccl_tuning.yaml): ring base + per-hop latency x steps (2(n-1)
    for all_reduce, n-1 otherwise; an intra-node step of a multi-node ring costs at least the
    proxy's network overhead); for all_reduce the tree's base + 2((local-1) intra +
    log2(nodes) inter) when that is lower, as NCCL's tuner would pick it (on its own
    constants). ``level_us`` is added to each of the tree's 2 log2(nodes) network hops
    (a curve's fitted ``level_us``); ring steps keep NCCL's constants."""
    ring, tree = _ring_tree_us(kind, n, nodes, local)
    if tree is not None and tree < ring:
        return tree + 2 * math.log2(nodes) * level_us
    return ring


def runs_tree(kind: str, n: int, nodes: int, local: int) -> bool:
    """Whether the small collectives of the group are NCCL's tree (``nccl_latency_us``)."""
    ring, tree = _ring_tree_us(kind, n, nodes, local)
    return tree is not None and tree < ring


def bus_factor(kind: str, n: int) -> float:
    if n <= 1:
        return 0.0
    if kind == "all_reduce":
        return 2 * (n - 1) / n
    if kind in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    return 1.0  # broadcast, reduce


def curve_time(curve: CollectiveCurve, bus_bytes: float, link_bw: float,
               ramp: float = 1.0) -> float:
    """``latency + bus_bytes / (link_bw x eff(ramp x bus_bytes))``: ``ramp`` moves the
    point the size ramp is read at (nic_ramp_scale), never the bytes that are sent."""
    if bus_bytes <= 0:
        return 0.0
    return curve.latency_us * 1e-6 + bus_bytes / (link_bw * curve.eff(ramp * bus_bytes))


def ring_link_bw(scale_up_bw: float, per_domain: int, nic_bw_per_gpu: float) -> float:
    """Bytes/s per GPU of a ring crossing scale-up domains: the NICs of the group's ranks in
    one domain (one NIC per GPU per rail, each ring channel on its own), capped by the
    scale-up bandwidth that forwards each byte inside the domain."""
    return min(scale_up_bw, per_domain * nic_bw_per_gpu)


def nic_ramp_scale(curve: CollectiveCurve | FabricCurve, scale_up_bw: float, per_domain: int,
                   nic_bw_per_gpu: float) -> float:
    """How much further up the scale-out curve's size ramp a ring with ``per_domain`` ranks
    in a scale-up domain sits than the group the curve was fitted on, at equal bus bytes:
    NIC bandwidth the fit group's ring aggregates (ring_link_bw at the fit group's ranks per
    domain) over what this ring aggregates. The curve's ``eff`` is read at the bus bytes
    times this, i.e. at equal bytes per NIC.

    Mechanism: NCCL's ramp comes from how much each channel pipelines, and its ring
    channels are bound to NICs. ncclTopoSearchRecNet (src/graph/search.cc, NCCL master
    5067397) gives each ring channel one NIC (``graph->inter[nChannels*2] = net->id``) and
    takes the channel's bandwidth off that NIC (``net.bw -= bw``), so a ring gets channels
    in proportion to the NICs it can use (then doubled alike by ncclTopoDupChannels). A
    ring with one GPU per node (the DP ring of a TP 8 plan) runs its bytes through one NIC
    in few channels; the fit sweep's ring (8 per node) spreads them over 8 NICs in 8x the
    channels. At equal bus bytes each of the one-NIC ring's channels carries 8x the
    bytes: it reads the ramp at 8x the bus bytes. The fit group itself gets 1. The flow
    model's tuner reads its ``fabric.network.*`` ramps the same way (Tuner.nic_ramp)."""
    fit_local = (curve.fit_group or FIT_GROUP)[3]
    return (ring_link_bw(scale_up_bw, fit_local, nic_bw_per_gpu)
            / ring_link_bw(scale_up_bw, per_domain, nic_bw_per_gpu))


def _moved_latency_us(curve: CollectiveCurve, nccl_us: float) -> float:
    """The curve's latency moved from the group it was fitted on to a pattern NCCL puts
    at ``nccl_us`` (tree levels at NCCL's constant plus the curve's ``level_us``): the
    curve's own plus ``nccl_us`` less NCCL's latency on the fit group, never below zero."""
    fit = nccl_latency_us(*(curve.fit_group or FIT_GROUP), level_us=curve.level_us)
    return max(curve.latency_us + nccl_us - fit, 0.0)


def ring_latency_us(curve: CollectiveCurve, kind: str, n: int, domains: int,
                    per_domain: int) -> float:
    """The latency ``scale_out_ring_time`` charges a ring over this group: the curve's
    moved to NCCL's latency on the group (``_moved_latency_us``)."""
    return _moved_latency_us(curve, nccl_latency_us(kind, n, domains, per_domain,
                                                    level_us=curve.level_us))


def p2p_step_latency_us() -> float:
    """NCCL's latency of one step over the network with the LL protocol (its ring model's
    base plus one network hop, sim/network/collectives/nccl_tuning.yaml): what a send/recv,
    or each peer's part of an all_to_all, pays."""
    c = nccl_model.constants()
    return c["base_latency_us"]["ring"]["LL"] + c["hw_latency_us"]["ring"]["network"]["LL"]


def scale_out_p2p_time(curve: CollectiveCurve, nbytes: float, bw: float) -> float:
    """A transfer across scale-up domains at ``bw`` (a send/recv, or the bytes an all_to_all
    sends off the domain): the scale-out curve at those bytes with the latency of one
    network step in place of the fit group's collective latency, as ``ring_latency_us``
    moves it for rings (the curve's own plus NCCL's one-step latency less NCCL's latency on
    the group the curve was fitted on, never below zero). A curve fitted on a four-node
    all_reduce (35.5 us, of which NCCL's tree on that group is 35.2) would otherwise charge
    every send its 2 log2(nodes) network hops."""
    if nbytes <= 0:
        return 0.0
    return p2p_latency_us(curve) * 1e-6 + nbytes / (bw * curve.eff(nbytes))


def p2p_latency_us(curve: CollectiveCurve) -> float:
    """The latency ``scale_out_p2p_time`` charges: the curve's moved to one network step
    (``_moved_latency_us``)."""
    return _moved_latency_us(curve, p2p_step_latency_us())


def scale_out_ring_time(curve: CollectiveCurve, kind: str, nbytes: float, n: int, domains: int,
                        per_domain: int, link_bw: float, ramp: float = 1.0) -> float:
    """A ring collective (RING_KINDS) of ``nbytes`` over ``n`` ranks on ``domains`` scale-up
    domains, at most ``per_domain`` of them in one, at ``link_bw`` per GPU (ring_link_bw):
    the scale-out curve at nccl-tests' bus bytes, its size ramp read at ``ramp`` x those
    (nic_ramp_scale: equal bytes per NIC as the fit group), plus NCCL's latency on this
    group less that of the group the curve was fitted on (never below the curve's
    bandwidth term)."""
    bus = bus_factor(kind, n) * nbytes
    if bus <= 0:
        return 0.0
    return (ring_latency_us(curve, kind, n, domains, per_domain) * 1e-6
            + bus / (link_bw * curve.eff(ramp * bus)))


def tree_ll_hops(layout: ClusterLayout, kind: str, nbytes: float, n: int, domains: int,
                 per_domain: int) -> float:
    """The tree's LL store-and-forward on this group, in extra transfers of the bus bytes
    (tree_pipeline.extra_chunk_times) where NCCL runs the tree (``runs_tree``) with LL
    (tree_pipeline.runs_ll, on NCCL's graph bandwidth as the flow tuner rates it: the
    scale-up ring up to two nodes, the ring across the NICs beyond); 0 elsewhere."""
    if not runs_tree(kind, n, domains, per_domain):
        return 0.0
    sys = layout.system
    arch = sys.gpu_spec.arch
    nic = layout.nic_bw_per_gpu
    graph_bw = (sys.scale_up_bw if domains <= 2 and per_domain > 1
                else ring_link_bw(sys.scale_up_bw, per_domain, nic))
    if not tree_pipeline.runs_ll(nbytes, n, domains, per_domain, graph_bw, arch):
        return 0.0
    ctas = nccl_model.ring_ctas(arch, sys.scale_up.gb_s_per_gpu, per_domain, domains, nic / 1e9)
    return tree_pipeline.extra_chunk_times("LL", nbytes, domains, ctas or per_domain)


def runs_nvls(system: SystemSpec, kind: str, n: int) -> bool:
    """Whether NCCL reduces ``kind`` over ``n`` ranks of one scale-up domain of ``system``
    in the switch (NVLS): all_reduce on more than two GPUs of an NVLS-capable switch (the
    flow model's rule, sim/network/collectives/nvls.py ``available``). Everything else
    there moves its bytes over the links: ring collectives, and all_to_all's sends."""
    up = system.scale_up
    return up.nvls and up.kind in SWITCHED_SCALE_UP and kind == "all_reduce" and n > 2


def domain_span(layout: ClusterLayout, ranks) -> tuple[int, int]:
    """(scale-up domains the ranks span, most ranks in one domain)."""
    per: dict[int, int] = {}
    for r in ranks:
        d = layout.domain(r)
        per[d] = per.get(d, 0) + 1
    return len(per), max(per.values())


@dataclass(frozen=True)
class ClusterLayout:
    """Where ranks sit: ``domain_gpus`` consecutive ranks share one scale-up domain."""
    system: SystemSpec
    nodes: int
    nic_gbps: float
    oversubscription: float = 1.0

    @property
    def world_size(self) -> int:
        return self.nodes * self.system.gpus_per_node

    @property
    def domain_gpus(self) -> int:
        return min(self.system.scale_up.domain_gpus, self.world_size)

    @property
    def nic_bw_per_gpu(self) -> float:
        s = self.system
        return s.nics_per_node * self.nic_gbps * 1e9 / 8 / s.gpus_per_node

    def scale_out_bw_per_gpu(self) -> float:
        """``nic_bw_per_gpu`` for traffic that leaves a scale-up domain; a system without
        scale-out NICs (a TPU v6e pod: nics_per_node 0) cannot carry it."""
        bw = self.nic_bw_per_gpu
        if bw <= 0:
            s = self.system
            raise ClusterSimError(
                f"the plan sends traffic between scale-up domains of {self.domain_gpus} GPUs, but "
                f"the system has no scale-out NICs (nics_per_node={s.nics_per_node}, "
                f"nic_gbps={self.nic_gbps:g}); keep the cluster within one domain "
                f"({self.domain_gpus // s.gpus_per_node or 1} nodes) or give the system NICs")
        return bw

    def domain(self, rank: int) -> int:
        return rank // self.domain_gpus


class AnalyticalNetwork:
    fidelity = "analytical"

    def __init__(self, layout: ClusterLayout, profile: Profile, bw_scale: float = 1.0):
        self.layout, self.profile, self.bw_scale = layout, profile, bw_scale
        self._span = lru_cache(maxsize=4096)(partial(domain_span, layout))
        self._ll_hops = lru_cache(maxsize=4096)(partial(tree_ll_hops, layout))

    def _curve(self, link: str):
        curve = self.profile.collectives.get(link)
        if curve is None:
            raise ClusterSimError(
                f"profile {self.profile.name!r} has no collective curve for {link!r} links "
                f"(it was fitted without collective measurements); add an nccl-tests log or "
                f"a collectives CSV to `clustersim calibrate fit`, or use a profile that has "
                f"one (built-in: {', '.join(builtin_names())})")
        return curve

    def collective_time(self, kind: str, nbytes: float, group: CommGroup) -> float:
        n = group.size
        if n <= 1 or nbytes <= 0:
            return 0.0
        domains, per_domain = self._span(group.ranks)
        bus = bus_factor(kind, n) * nbytes
        sys = self.layout.system
        if domains == 1:
            bw = self.domain_bw(n, group.ranks)
            return curve_time(self._domain_curve(kind, n), bus, bw * self.bw_scale)
        nic = self.layout.scale_out_bw_per_gpu() / self.layout.oversubscription
        if kind == "all_to_all":
            # Only what a GPU sends off its scale-up domain crosses its NIC (the rest moves
            # over NVLink at the same time): busbw ~ N/(N-1) x the NIC on N nodes
            # (nccl_tuning_constants.md); the flow model places the same bytes.
            # The ramp stays read at those bytes (no nic_ramp_scale): NCCL's all_to_all is
            # grouped send/recv, each peer's bytes split over p2pnChannelsPerPeer channels
            # (src/graph/paths.cc ncclTopoComputeP2pChannels), not over ring channels bound
            # one per NIC, so how many NICs a ring would span does not set its chunks.
            off = nbytes * (n - per_domain) / n
            return scale_out_p2p_time(self._curve("network"), off, nic * self.bw_scale)
        curve = self._curve("network")
        link_bw = ring_link_bw(sys.scale_up_bw, per_domain, nic) * self.bw_scale
        t = scale_out_ring_time(curve, kind, nbytes, n, domains, per_domain, link_bw,
                                nic_ramp_scale(curve, sys.scale_up_bw, per_domain, nic))
        if curve.ll_hop_eff:         # the tree's LL chunks cross its levels in turn
            t += (self._ll_hops(kind, nbytes, n, domains, per_domain) * bus
                  / (link_bw * curve.ll_hop_eff))
        return t

    def _domain_curve(self, kind: str, n: int) -> CollectiveCurve:
        """The curve of a collective over ``n`` ranks of one scale-up domain. A profile
        fitted on an NVLS system has two: ``nvlink``, NCCL's NVLS all_reduce (busbw above
        the link rate: the switch reduces), and ``nvlink_ring``, what moves over the links
        (busbw at most the link rate). NCCL runs NVLS for all_reduce on more than two
        GPUs only (src/transport/nvls.cc turns it off for ``gpuCount <= 2``; NCCL 2.18 has
        no NVLS reduce_scatter / all_gather and later versions pick ring for them at large
        sizes: docs/fabric.md), so every other collective there, and every collective on
        a system without NVLS, takes ``nvlink_ring`` (``runs_nvls``). Profiles without a
        ring curve (fitted on ring sweeps: the A100s) keep ``nvlink``."""
        ring = self.profile.collectives.get("nvlink_ring")
        if ring is None or runs_nvls(self.layout.system, kind, n):
            return self._curve("nvlink")
        return ring

    def domain_bw(self, k: int, ranks=None) -> float:
        """Bytes/s per GPU of a ring collective over k GPUs of one scale-up domain: the
        GPU's whole scale-up bandwidth on a switch; on a full mesh (xGMI, HCCS) only the
        links among the k GPUs, as many as their link-disjoint rings use
        (hw_models/mesh_rings.py): 7/7 of it for 8 MI300X, 2/7 for 4, 1/7 for 2; on a
        torus (``ranks`` given) one link per disjoint ring along the dimensions the group
        spans (hw_models/torus_rings.py): 2 links of 6 for a line of v5p chips."""
        up = self.layout.system.scale_up
        if up.kind == "ici-torus" and ranks is not None:
            dom = self.layout.domain_gpus
            pos = tuple(int(r) % dom for r in ranks if int(r) // dom == int(ranks[0]) // dom)
            dims = torus_dims(dom, up.torus_dims or 3)
            return torus_group_bw(up.gb_s_per_gpu, dims, pos) * 1e9
        if up.kind not in MESH_KINDS:
            return self.layout.system.scale_up_bw
        return mesh_group_bw(up.gb_s_per_gpu, self.layout.domain_gpus, k) * 1e9

    def p2p_time(self, src: int, dst: int, nbytes: float) -> float:
        if nbytes <= 0 or src == dst:
            return 0.0
        same = self.layout.domain(src) == self.layout.domain(dst)
        curve = self._curve("nvlink" if same else "network")
        bw = self.domain_bw(2, (src, dst)) if same else (
            self.layout.scale_out_bw_per_gpu() / self.layout.oversubscription)
        if same:
            return curve_time(curve, nbytes, bw * self.bw_scale)
        return scale_out_p2p_time(curve, nbytes, bw * self.bw_scale)

    def set_simulated_ranks(self, ranks) -> None:
        """No link sharing in the closed form, so which ranks are simulated changes nothing."""

    # SimPy processes: the analytical model just holds for the closed-form time.
    def collective(self, env: simpy.Environment, op: Collective) -> Generator:
        yield env.timeout(self.collective_time(op.kind, op.bytes, op.group))

    def p2p(self, env: simpy.Environment, src: int, dst: int, nbytes: float) -> Generator:
        yield env.timeout(self.p2p_time(src, dst, nbytes))


SWITCHED_SCALE_UP = frozenset({"nvswitch", "nvl-domain"})


def collective_ctas(layout: ClusterLayout, arch: str | None, ranks) -> int:
    """SMs an NCCL ring/tree collective over ``ranks`` holds on each of them while it runs
    (its execution channels, one CTA each: nccl_model.ring_ctas) on NVSwitch / NVL
    domains of ``arch`` GPUs; 0 elsewhere (meshes, tori, other vendors' libraries) and for
    one rank. An NVL domain of several trays is one NCCL node (MNNVL)."""
    sys = layout.system
    if len(ranks) < 2 or sys.scale_up.kind not in SWITCHED_SCALE_UP:
        return 0
    domains, local = domain_span(layout, ranks)
    return nccl_model.ring_ctas(arch, sys.scale_up.gb_s_per_gpu, local, domains,
                                layout.nic_bw_per_gpu / 1e9)
