"""Time of one DeepEP dispatch or combine (workloads.graph.ExpertDispatch; docs/moe.md).

Normal kernels (training, prefill): a token crosses the scale-out network once per remote
node it goes to (RDMA, to the GPU of the same local index there), which forwards it over
NVLink to the GPUs that hold its experts. The two phases run at once, pipelined in chunks
of tokens (deepseek-ai/DeepEP csrc/kernels/internode.cu: RDMA senders, NVLink forwarders
and receivers are warps of the same kernel), so

    t = max(t_rdma, t_nvl) + min(t_rdma, t_nvl) / chunks + latency

Low-latency kernels (decode): every routed copy goes straight to its rank, over RDMA to
other nodes and over NVLink inside the node, all at once:

    t = max(t_rdma, t_nvl) + latency

t_rdma: the bytes that leave the GPU's scale-up domain at the NIC's achievable rate: its
line rate (catalog) times ``nic_achievable_frac`` (hw_models/data/fabric.yaml, 0.95: NCCL's
maintainers give 46-49 GB/s for a 400 Gb/s ConnectX-7).
t_nvl: the NVLink bytes at the GPU's scale-up bandwidth (catalog) times the profile's
point-to-point NVLink efficiency (``fabric.nvlink.p2p``, fitted on send/recv
measurements; DeepEP's transfers are peer stores), or the full bandwidth where the
profile has no such curve; for the internode normal kernels at most their SMs times the
profile's ``deepep.nvl_gb_s_per_sm`` (their NVLink forwarders and receivers are warps of
those SMs; calibration/fit_deepep.py). latency: one signalling round across the fabric (the
receivers wait for the senders' last flag): the catalog's per-hop latency of the
scale-out network plus that of NVLink, or NVLink's alone inside one domain.
DeepEP's published kernel benchmarks check this (``clustersim validate moe``).

HybridEP (``op.hybridep``) inside one NVLink domain: t = nvl_bytes / its published
algorithm bandwidth at the domain's EP ranks and its SMs (hw_models/hybridep.py; the
published time is the whole call, so no latency is added). Across domains, or on a fabric
the table does not cover, it is priced as DeepEP's kernels at DeepEP's 20 SMs; its own
SMs (``moe_hybridep_num_sms``) are what it takes from compute running beside it.
"""

from __future__ import annotations

from hw_models.hybridep import intranode_rate
from hw_models.topology import fabric_defaults
from sim.network.analytical import domain_span
from workloads.graph import ExpertDispatch
from workloads.moe_dispatch import DEEPEP_SMS


def _p2p_eff(profile, nbytes: float) -> float:
    curve = getattr(profile, "fabric", {}).get("nvlink.p2p") if profile is not None else None
    return 1.0 if curve is None or nbytes <= 0 else curve.eff(nbytes)


def phase_times(layout, profile, op: ExpertDispatch,
                bw_scale: float = 1.0) -> tuple[float, float, float]:
    """(t_rdma, t_nvl, latency) in seconds of one ExpertDispatch on ``layout``;
    ``bw_scale`` multiplies every link's bandwidth (as AnalyticalNetwork's)."""
    system = layout.system
    n = op.group.size
    domains, per_domain = domain_span(layout, op.group.ranks) if n > 1 else (1, 1)
    off = op.bytes * (n - per_domain) / n if domains > 1 else 0.0
    if op.hybridep and domains == 1:
        rate = intranode_rate(system.scale_up.gb_s_per_gpu,
                              system.scale_up.domain_gpus > system.gpus_per_node,
                              n, op.sms, op.combine)
        if rate is not None:
            return 0.0, (op.nvl_bytes / (rate * bw_scale) if op.nvl_bytes > 0 else 0.0), 0.0
    t_rdma = off / (layout.scale_out_bw_per_gpu() / layout.oversubscription
                    * fabric_defaults()["nic_achievable_frac"] * bw_scale) if off > 0 else 0.0
    nvl_bw = system.scale_up_bw * _p2p_eff(profile, op.nvl_bytes)
    fit = getattr(profile, "deepep", None)
    # HybridEP across domains runs as DeepEP's kernels on DeepEP's SMs: the per-SM NVLink
    # rate is fitted on DeepEP's forwarders, not HybridEP's (its SMs count only beside compute)
    sms = DEEPEP_SMS if op.hybridep else op.sms
    if fit is not None and domains > 1 and not op.low_latency and sms:
        nvl_bw = min(nvl_bw, sms * fit.nvl_gb_s_per_sm * 1e9)   # forwarders' SMs
    t_nvl = op.nvl_bytes / (nvl_bw * bw_scale) if op.nvl_bytes > 0 else 0.0
    hop = system.scale_up.hop_latency_us + (system.nic_hop_latency_us if domains > 1 else 0.0)
    return t_rdma, t_nvl, hop * 1e-6


def dispatch_time(layout, profile, op: ExpertDispatch, bw_scale: float = 1.0) -> float:
    """Seconds of one DeepEP dispatch or combine (module docstring)."""
    t_rdma, t_nvl, latency = phase_times(layout, profile, op, bw_scale)
    if t_rdma <= 0 and t_nvl <= 0:
        return 0.0
    fill = 0.0 if op.low_latency else min(t_rdma, t_nvl) / max(1, op.chunks)
    return max(t_rdma, t_nvl) + fill + latency
