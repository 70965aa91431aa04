"""The analytical collective curves of the built-in profiles, fitted on published
all_reduce sweeps (``collectives.nvlink``, ``collectives.network``) and ring measurements
(``collectives.nvlink_ring``); calibration/build_profiles.py writes them into the a100
and h100 profiles (docs/calibration.md)."""

from __future__ import annotations

import numpy as np

from calibration.fitting import Fit, fit_collective, fit_collective_on_plateau
from calibration.parsers import read_nccl_tests
from calibration.reference_files import REF, reference_csv
from hw_models import catalog


def all_reduce_fit(sizes, times_s, n: int, link_bw: float, nodes: int | None = None) -> Fit:
    """The collective curve of an all_reduce sweep over ``n`` GPUs; a multi-node sweep on
    ``nodes`` nodes other than the echo two-node one records its group (fit_group)."""
    bus = 2 * (n - 1) / n * np.asarray(sizes, float)
    fit = fit_collective(bus, times_s, link_bw)
    if nodes is not None:
        fit.params["fit_group"] = ["all_reduce", n, nodes, n // nodes]
    return fit


# The echo ND A100 v4 all_reduce logs the a100 network curves are fitted on: 2 and 8 nodes
# x 8 GPUs (the 4- and 16-node logs are held out: validate_nccl.check_sweeps).
A100_NETWORK_GPUS = (16, 64)


def all_reduce_nodes_fit(logs: list[tuple[int, object]], link_bw: float,
                         system: str = "azure-nd-a100-v4") -> Fit:
    """The collective curve of all_reduce sweeps over several node counts of 8 GPUs
    (``logs``: (GPUs, nccl-tests log), the first the fit group, analytical.FIT_GROUP):
    one latency on the fit group, one extra per tree level (``level_us``) and one ramp,
    each sweep's latency moved from the fit group's by NCCL's (analytical.nccl_latency_us),
    and the tree's LL store-and-forward (analytical.tree_ll_hops on ``system``) at one fitted
    hop rate (``ll_hop_eff``)."""
    from calibration.fitting import fit_collective_hops
    from sim.network.analytical import FIT_GROUP, ClusterLayout, nccl_latency_us, tree_ll_hops
    groups = [("all_reduce", n, n // 8, 8) for n, _ in logs]
    assert groups[0] == FIT_GROUP
    which = np.concatenate([[j] * len(log.size_bytes) for j, (_, log) in enumerate(logs)])
    bus = np.concatenate([2 * (n - 1) / n * np.asarray(log.size_bytes, float) for n, log in logs])
    t = np.concatenate([np.asarray(log.ip_time_us, float) * 1e-6 for _, log in logs])

    def moved_us(level_us: float) -> np.ndarray:
        lat = np.array([nccl_latency_us(*g, level_us=level_us) for g in groups])
        return (lat - lat[0])[which]
    sys = catalog.system(system)
    hops = np.concatenate([[tree_ll_hops(ClusterLayout(sys, n // 8, sys.nic_gbps), *g[:1],
                                         float(size), *g[1:]) for size in log.size_bytes]
                           for g, (n, log) in zip(groups, logs, strict=True)])
    return fit_collective_hops(bus, t, link_bw, moved_us, hops)


def a100_collectives() -> dict[str, Fit]:
    nvl = reference_csv("collectives/azure_a100_8gpu_all_reduce.csv")
    t = 2 * 7 / 8 * nvl.size_bytes / (nvl.busbw_gb_s * 1e9)
    sys = catalog.system("dgx-a100")
    logs = [(n, read_nccl_tests(REF / f"echo_nccl_tests/azure_a100_40gb_all_reduce_{n}gpu.log"))
            for n in A100_NETWORK_GPUS]
    # Nodes x 8 GPUs, one 200 Gb/s NIC per GPU: the node's NICs bound the ring.
    net_bw = min(sys.scale_up_bw, sys.gpus_per_node * sys.nic_bw_per_gpu)
    return {"nvlink": all_reduce_fit(nvl.size_bytes, t, 8, sys.scale_up_bw),
            "network": all_reduce_nodes_fit(logs, net_bw)}


H100_NETWORK = "collectives/voltage_park_h100_4node_all_reduce.csv"


def h100_collectives() -> dict[str, Fit]:
    nvl = reference_csv("collectives/dgx_h100_all_reduce_nvls.csv")
    sys = catalog.system("dgx-h100")
    net = reference_csv(H100_NETWORK)
    # Four nodes x 8 GPUs, one 400 Gb/s NIC per GPU: the node's NICs bound the ring.
    net_bw = min(sys.scale_up_bw, sys.gpus_per_node * sys.nic_bw_per_gpu)
    nvlink = all_reduce_fit(nvl.size_bytes, nvl.time_us * 1e-6, 8, sys.scale_up_bw)
    return {"nvlink": nvlink, "nvlink_ring": h100_ring_fit(sys.scale_up_bw),
            "network": all_reduce_fit(net.size_bytes, net.time_us * 1e-6, 32, net_bw, nodes=4)}


H100_RING_POINTS = "collectives/nvlink4_ring_busbw_points.csv"
H100_RING_RAMP = "vidur/network/h100_dgx_all_reduce.csv"
H100_NVLS_SWEEP = "collectives/dgx_h100_all_reduce_nvls.csv"
# The DGX H100 all_reduce sizes NCCL runs as ring LL, not NVLS: NCCL's own model (the flow
# tuner's nccl_pick) picks ring LL up to 512 KiB on that sweep and NVLS from 1 MiB
# (NCCL 2.27.7 logs ring LL up to 1 MiB on 8x H200: stas00/ml-engineering).
RING_LL_MAX_BYTES = 512 * 1024
# Vidur's 2-GPU H100 times are the harness' pace up to 6 MiB (28-46 us, not monotone in
# size; docs/fabric.md, "Vidur's harness"): the ring's bandwidth shows from 8 MiB.
VIDUR_RING_MIN_BYTES = 8 * 2 ** 20


def ring_plateau(link_bw: float, rel: str = H100_RING_POINTS) -> float:
    """Plateau of a ring collective inside one NVLink 4 node, as a fraction of the link:
    the mean of the published large-size ring busbw (all_reduce with NVLS off,
    reduce_scatter, all_gather on 8 H100 / H200) over the link bandwidth."""
    return float(reference_csv(rel).busbw_gb_s.mean()) * 1e9 / link_bw


def h100_ring_points() -> tuple[np.ndarray, np.ndarray]:
    """(bus bytes, seconds) of the ring measurements the ring curve's latency and ramp
    are fitted on: the DGX H100 all_reduce sweep's ring LL sizes (8 GPUs, nccl-tests,
    <= RING_LL_MAX_BYTES) and Vidur's 2-GPU DGX H100 all_reduce (a ring: no NVLS on 2
    GPUs) from VIDUR_RING_MIN_BYTES, at the half-octave sizes ``validate nccl`` reads."""
    from calibration.validate_nccl import check_sweeps
    from sim.network.analytical import bus_factor
    nvl = reference_csv(H100_NVLS_SWEEP)
    nvl = nvl[nvl.size_bytes <= RING_LL_MAX_BYTES]
    (two,) = [s for s in check_sweeps() if s.name == "Vidur DGX H100 2 GPU"]
    two = two.data[two.data.size_bytes >= VIDUR_RING_MIN_BYTES]
    bus = np.concatenate([bus_factor("all_reduce", 8) * nvl.size_bytes.to_numpy(float),
                          bus_factor("all_reduce", 2) * two.size_bytes.to_numpy(float)])
    return bus, np.concatenate([nvl.time_us.to_numpy(), two.time_us.to_numpy()]) * 1e-6


def h100_ring_fit(link_bw: float) -> Fit:
    """``collectives.nvlink_ring``: the curve of what NCCL runs as a ring inside an NVLS
    node (reduce_scatter, all_gather, broadcast, all_reduce on 2 GPUs). Plateau from the
    published ring points (``ring_plateau``); latency and size ramp fitted on the ring
    measurements of ``h100_ring_points``."""
    bus, t = h100_ring_points()
    return fit_collective_on_plateau(bus, t, link_bw, ring_plateau(link_bw))
