"""Per-size choice of algorithm and protocol, the way NCCL's tuner makes it, and its time.

Choice: NCCL's own cost model (nccl_model.py, src/graph/tuning.cc) over every enabled
pair; the simulator runs what NCCL would run, even where NCCL's coarse model is wrong.
Time of the chosen pair (what the flow model then runs):

- latency: NCCL's base + per-hop constants (nccl_tuning.yaml) plus the profile's fitted
  extras per link class (``fabric.<cls>.base_us`` once, ``step_us`` per hop);
- bandwidth: the algorithm's flows solved max-min on the topology with no other
  traffic (seconds per byte, cached per group shape), divided by NCCL's protocol
  factor and the fitted size ramp eff(S) of the link class; a tree with LL across
  domains adds its store-and-forward hops at the ramp's plateau (``pipeline``,
  tree_pipeline.py: a chunk crosses each network level in turn). Across scale-up domains the
  ramp is read at the bytes each NIC carries relative to the group the curve was fitted
  on (``nic_ramp``, the analytical model's ``nic_ramp_scale``): 8x S for a ring with one
  GPU per node against an 8-per-node fit sweep, S itself on the fit group.

Fits are looked up per algorithm and protocol first (``fabric.<cls>.<algo>.<proto>``),
then per protocol (``fabric.<cls>.<proto>``, e.g. ``nvlink.LL``), then per class. The
per-algorithm curve is for a node whose ``nvlink.<proto>`` curve is fitted on another
algorithm: on an NVLS node NCCL's all_reduce sweep runs NVLS from 1 MiB, so
``nvlink.Simple`` is NVLS's curve, while rings (reduce_scatter, all_gather, broadcast,
2-GPU all_reduce) run on the ring graph at their own port efficiency; the h100 profile's
``nvlink.ring.Simple`` carries the published ring plateau (calibration/fit_fabric.py
``ring_on_plateau``). Point-to-point uses ``fabric.<cls>.p2p`` where the profile has it (an
all_reduce curve's base_us carries the cost of 2(n-1) synchronised steps, one send/recv
has none). Ring LL is streamed: LL has no step barrier (each 8-byte word carries
its own flag), so the 2(n-1) ring steps overlap and its size term follows the per-rank
chunk S/n rather than the bus bytes, bounded below by the bus bytes at full LL rate
(inside one domain: no multi-node LL ring data to check it against).
Evidence: on the echo A100 logs (2, 4, 8 GPUs) the time above the small-size floor is
the same at equal S/n for all three GPU counts (docs/fabric.md).
NVLS ramps on the slice too: each GPU reduces (multimem.ld_reduce) and multicasts
(multimem.st) only its own 1/n slice of the buffer, so the pipeline fills with S/n,
not S (``RAMP_ON_SLICE``). Evidence: on Vidur's DGX H100 4- and 8-GPU all_reduce the
NVLink efficiency (port bytes (1 + 1/n) S over time) is the same at equal S/n (4 GPUs at
S, 8 GPUs at 2S: 0.38/0.36 at 8/16 MiB, 0.50/0.43 at 16/32, 0.56/0.52 at 32/64 MiB),
not at equal S (docs/fabric.md).

The chosen pair's flows then run on the shared fabric carrying ``bytes / (factor x
eff(S))`` wire bytes, so protocol overheads and contention compose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw_models.errors import ClusterSimError
from hw_models.profile import FabricCurve
from hw_models.topology import Topology
from sim.network.analytical import nic_ramp_scale
from sim.network.collectives import nccl_model, tree_pipeline
from sim.network.collectives.base import ALGORITHMS, Algorithm, CollCtx, Plan, get
from sim.network.collectives.ring import PER_RANK
from sim.network.maxmin import maxmin_rates

PROTOCOLS = ("LL", "LL128", "Simple")
STREAMED = frozenset({"LL"})   # protocols whose ring steps overlap (see module docstring)
RAMP_ON_SLICE = frozenset({"nvls"})   # algorithms whose size ramp follows S/n (docstring)
# Algorithms run on NCCL's collective graphs, whose channels are bound one per NIC across
# nodes: every graph pattern (ring; tree, whose graph PAT shares; NVLS, whose graph NVLS
# tree shares; CollNet) is searched from a NIC by ncclTopoSearchRecNet (src/graph/search.cc,
# NCCL master 5067397: ``graph->inter[nChannels*2] = net->id``, ``net.bw -= bw``; init.cc
# maps NCCL_ALGO_PAT to treeGraph and NCCL_ALGO_NVLS_TREE to nvlsGraph). Not all-to-all
# and send/recv (per-peer p2p channels, src/graph/paths.cc ncclTopoComputeP2pChannels),
# nor the rhd / hierarchical fallbacks, which NCCL does not have.
NIC_BOUND = frozenset({"ring", "tree", "pat", "nvlstree", "collnet"})


def ramp_bytes(algo: str, nbytes: float, n: int) -> float:
    """The size the efficiency ramp eff(.) is read at: the per-rank slice S/n for
    ``RAMP_ON_SLICE`` algorithms, else the buffer size S."""
    return nbytes / n if algo in RAMP_ON_SLICE and n > 1 else nbytes


nccl_constants = nccl_model.constants


@dataclass(frozen=True)
class Choice:
    algo: str
    proto: str
    latency_s: float
    wire_factor: float       # wire bytes per payload byte (1 / (protocol factor x eff(S)))
    seconds_per_byte: float  # contention-free transfer time per payload byte at full rate

    def time(self, nbytes: float) -> float:
        return self.latency_s + self.seconds_per_byte * nbytes * self.wire_factor


class Tuner:
    def __init__(self, topo: Topology, fits: dict[str, FabricCurve], intra_class: str,
                 nvls: bool, sharp: bool, max_channels: int = 8, arch: str | None = None,
                 scale_up_bw: float = 0.0, nic_bw_per_gpu: float = 0.0):
        self.topo, self.fits, self.intra_class = topo, fits, intra_class
        self.nvls, self.sharp, self.max_channels = nvls, sharp, max_channels
        self.arch = arch   # GPU architecture (catalog), for NCCL's per-architecture caps
        # Bytes/s per GPU of the scale-up fabric and of its NICs (ClusterLayout, as the
        # analytical model counts them), for ``nic_ramp``; 0: the ramp read at S.
        self.scale_up_bw, self.nic_bw_per_gpu = scale_up_bw, nic_bw_per_gpu
        self._spb: dict[tuple, float] = {}

    def ctx(self, kind: str, nbytes: float, ranks: tuple[int, ...]) -> CollCtx:
        return CollCtx(kind, nbytes, ranks, self.topo, self.max_channels, self.sharp, self.nvls)

    def fit(self, cls: str, proto: str | None = None, algo: str | None = None) -> FabricCurve:
        """The fitted curve: point-to-point has its own (``<cls>.p2p``, fitted on
        send/recv sweeps) where the profile has one; else per algorithm and protocol
        (``<cls>.<algo>.<proto>``), then per protocol, then per class."""
        if algo == "p2p" and f"{cls}.p2p" in self.fits:
            return self.fits[f"{cls}.p2p"]
        return (self.fits.get(f"{cls}.{algo}.{proto}") or self.fits.get(f"{cls}.{proto}")
                or self.fits.get(cls) or FabricCurve())

    def latency(self, algo: Algorithm, proto: str, ctx: CollCtx, fitted: bool = True) -> float:
        """NCCL's latency formula plus (``fitted``) the profile's extras, in seconds."""
        c = nccl_constants()
        key = algo.lat_key
        intra, inter = algo.steps(ctx)
        hw = c["hw_latency_us"][key]
        cls = "network" if ctx.n_domains > 1 else "nvlink"
        w = 1.0 if fitted else 0.0
        intra_hw, inter_hw = hw[self.intra_class][proto], hw["network"][proto]
        if ctx.n_domains > 1 and key == "ring" and ctx.kind not in ("reduce", "broadcast"):
            # tuning.cc: "inter-node rings still have to launch nsteps * net overhead":
            # every intra-node step of a multi-node ring costs at least the proxy's
            # per-step network overhead (intraLat = max(intraLat, netOverhead)).
            intra_hw = max(intra_hw, c["net_overhead_us"][proto])
        name = algo.name
        us = (c["base_latency_us"][key][proto] + w * self.fit(cls, proto, name).base_us
              + intra * (intra_hw + w * self.fit("nvlink", proto, name).step_us)
              + inter * (inter_hw + w * self.fit("network", proto, name).step_us))
        return max(us, 0.0) * 1e-6   # a fit at its latency floor rounds to -1e-16

    def protocol_factor(self, algo: Algorithm, proto: str, ctx: CollCtx) -> float:
        return nccl_model.protocol_factor(algo.lat_key, proto, ctx.kind, ctx.n_domains,
                                          ctx.n / ctx.n_domains)

    def nic_ramp(self, algo: Algorithm, curve: FabricCurve, ctx: CollCtx) -> float:
        """How much further up the ``network`` curve's size ramp this group sits than the
        group the curve was fitted on: ``analytical.nic_ramp_scale`` at the group's ranks
        per domain (NCCL binds each channel of a NIC_BOUND algorithm to one NIC, so at equal
        bytes a ring with one GPU per node pushes 8x the bytes through each channel of the
        8-NIC fit ring); 1 inside one domain, for all-to-all / send/recv, and without NICs."""
        if ctx.n_domains < 2 or algo.name not in NIC_BOUND or self.nic_bw_per_gpu <= 0:
            return 1.0
        return nic_ramp_scale(curve, self.scale_up_bw, ctx.local, self.nic_bw_per_gpu)

    def wire_factor(self, algo: Algorithm, proto: str, ctx: CollCtx) -> float:
        bwf = self.protocol_factor(algo, proto, ctx)
        cls = "network" if ctx.n_domains > 1 else "nvlink"
        curve = self.fit(cls, proto, algo.name)
        at = ramp_bytes(algo.name, ctx.nbytes, ctx.n) * self.nic_ramp(algo, curve, ctx)
        # the streamed size term, plus the tree's store-and-forward hops at the link's rate
        bus = (1.0 / (bwf * curve.eff(at))
               + self.pipeline(algo, proto, ctx) / (bwf * curve.eff_max))
        if proto not in STREAMED or algo.name != "ring" or ctx.n < 2 or ctx.n_domains > 1:
            return bus
        # Streamed: size term (S/n) / (B bwf eff(S/n)), as a multiple of the bus term.
        frac = 1.0 / (ctx.n * PER_RANK[ctx.kind](ctx.n))
        chunk = frac / (bwf * curve.eff(ctx.nbytes / ctx.n))
        return max(chunk, 1.0 / (bwf * curve.eff_max))

    def pipeline(self, algo: Algorithm, proto: str, ctx: CollCtx) -> float:
        """The tree's store-and-forward across its network levels, in extra transfers at
        the link's rate (tree_pipeline.extra_chunk_times, NCCL's execution channels of the
        group the most it trims from); 0 for every other algorithm and inside one domain."""
        if algo.name != "tree" or ctx.n_domains < 2:
            return 0.0
        ctas = nccl_model.ring_ctas(self.arch, self.scale_up_bw / 1e9, ctx.local, ctx.n_domains,
                                    self.nic_bw_per_gpu / 1e9)
        return tree_pipeline.extra_chunk_times(proto, ctx.nbytes, ctx.n_domains,
                                               ctas or ctx.channels)

    def seconds_per_byte(self, algo: Algorithm, ctx: CollCtx) -> float:
        """Contention-free time per payload byte: phases in sequence, each as slow as its
        slowest flow under max-min sharing (rates do not depend on size)."""
        key = (algo.name, ctx.kind, ctx.ranks)
        if key not in self._spb:
            unit = CollCtx(ctx.kind, 1.0, ctx.ranks, self.topo, self.max_channels, self.sharp,
                           self.nvls)
            self._spb[key] = sum(phase_time(self.topo, ph) for ph in algo.plan(unit))
        return self._spb[key]

    def candidates(self, kind: str, ctx: CollCtx, algo: str | None, proto: str | None):
        if algo:
            a = get(algo)
            if kind not in a.kinds:
                raise ClusterSimError(f"algorithm {algo!r} does not run {kind}; it runs {sorted(a.kinds)}")
            if not a.available(ctx):
                raise ClusterSimError(f"algorithm {algo!r} is not available for this group/system")
            algos = [a]
        else:
            algos = [a for a in ALGORITHMS.values()
                     if kind in a.kinds and a.tuned and a.available(ctx)]
            if not algos:  # e.g. all_to_all has only untuned fallbacks
                algos = [a for a in ALGORITHMS.values() if kind in a.kinds and a.available(ctx)]
        if proto and proto not in PROTOCOLS:
            raise ClusterSimError(f"unknown protocol {proto!r}; allowed: {list(PROTOCOLS)}")
        pairs = [(a, p) for a in algos for p in a.protos if proto in (None, p)]
        if not pairs:
            raise ClusterSimError(f"no algorithm runs {kind} with protocol {proto!r} here")
        return pairs

    def graph_bw(self, ctx: CollCtx) -> float:
        """NCCL's nChannels x bw: the scale-up ring's bus bandwidth up to two nodes (NCCL
        rates them with bwIntra), else the ring's bus bandwidth across the NICs."""
        intra = ctx.n_domains <= 2 and ctx.local > 1
        ranks = ctx.domains[0] if intra else ctx.ranks
        sub = CollCtx("all_reduce", 1.0, tuple(ranks), self.topo, self.max_channels,
                      self.sharp, self.nvls)
        bw = PER_RANK["all_reduce"](sub.n) / self.seconds_per_byte(get("ring"), sub)
        if ctx.n_domains == 1 and self.intra_class == "nvlink":
            # One NVLink domain: NCCL rates its graph at links x its per-link figure.
            # Two nodes keep the scale-up bandwidth: there NCCL's channel count comes
            # from the NIC graph as well, and the rated figure (fewer channels, lower
            # tree caps) moves 16 A100s at 256 KiB from tree LL128 to ring LL, which
            # the echo 16-GPU log contradicts (77.6 us measured, 152 us as ring LL).
            bw *= nccl_model.nvlink_rating(self.arch)
        return bw

    def nccl_pick(self, kind: str, nbytes: float, ranks: tuple[int, ...],
                  algo: str | None = None, proto: str | None = None) -> tuple[Algorithm, str]:
        """The pair NCCL's own model rates fastest (nccl_model.py)."""
        ctx = self.ctx(kind, nbytes, ranks)
        pairs = self.candidates(kind, ctx, algo, proto)
        if len(pairs) == 1 or ctx.n < 2:
            return pairs[0]
        bw = self.graph_bw(ctx)
        per_rank = PER_RANK.get(kind, lambda n: 1.0)(ctx.n)
        arch = nccl_model.arch_key(self.arch)
        chans = nccl_model.nchannels(self.arch, bw, ctx.n_domains, ctx.local)

        def t(pair):
            a, p = pair
            return nccl_model.nccl_time(a.lat_key, p, kind, nbytes,
                                        self.latency(a, p, ctx, fitted=False) * 1e6, bw, ctx.n,
                                        ctx.n_domains, per_rank, arch, chans)
        return min(pairs, key=t)

    def choose(self, kind: str, nbytes: float, ranks: tuple[int, ...], algo: str | None = None,
               proto: str | None = None) -> Choice:
        a, p = self.nccl_pick(kind, nbytes, ranks, algo, proto)
        ctx = self.ctx(kind, nbytes, ranks)
        return Choice(a.name, p, self.latency(a, p, ctx), self.wire_factor(a, p, ctx),
                      self.seconds_per_byte(a, ctx))

    def plan(self, choice: Choice, kind: str, nbytes: float, ranks: tuple[int, ...]) -> Plan:
        return get(choice.algo).plan(self.ctx(kind, nbytes, ranks))


def phase_time(topo: Topology, flows: list) -> float:
    if not flows:
        return 0.0
    uvs = np.array([(u, v, s) for u, v, _, s in flows], np.int64)
    paths = topo.routes_v(uvs[:, 0], uvs[:, 1], uvs[:, 2])       # one batch (hw_models/routing.py)
    rates = maxmin_rates(paths, topo.cap)
    sizes = np.array([b for _, _, b, _ in flows])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(np.isinf(rates), 0.0, sizes / rates)
    return float(t.max())
