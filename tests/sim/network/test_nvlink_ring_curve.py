"""Inside one NVLS-capable node (DGX H100) the analytical model prices NCCL's NVLS
all_reduce (> 2 GPUs) on the profile's ``collectives.nvlink`` curve (busbw above the
link: the switch reduces) and everything NCCL runs as a ring there (reduce_scatter,
all_gather, broadcast, 2-GPU all_reduce) on ``collectives.nvlink_ring`` (busbw at most
the link). Hand checks: t = latency + bus_bytes / (450 GB/s x eff(bus_bytes)),
eff(S) = eff_max / (1 + (bytes_half / S)^gamma), with the h100 profile's curves; the
held-out 8x H100 ring reduce_scatter sweep (NVIDIA/nccl issue 1047) against the ring
curve."""

import numpy as np
import pandas as pd
import pytest

from calibration.collective_fits import H100_RING_POINTS, REF, ring_plateau
from calibration.validate_nccl import H100_RS_RING
from hw_models import catalog
from hw_models.profile import load_builtin
from sim.network.analytical import AnalyticalNetwork, ClusterLayout, runs_nvls
from workloads.graph import CommGroup

MIB = 2 ** 20
LINK = 450e9      # 18 NVLink4 x 25 GB/s per direction


def _net(system="dgx-h100", profile="h100"):
    sys = catalog.system(system)
    return AnalyticalNetwork(ClusterLayout(sys, 1, sys.nic_gbps), load_builtin(profile))


def _hand(curve, bus):
    eff = curve.eff_max / (1 + (curve.bytes_half / bus) ** curve.gamma)
    return curve.latency_us * 1e-6 + bus / (LINK * eff)


def test_reduce_scatter_on_8_h100_uses_the_ring_curve():
    ring = load_builtin("h100").collectives["nvlink_ring"]
    t = _net().collective_time("reduce_scatter", 256 * MIB, CommGroup(tuple(range(8))))
    assert t == pytest.approx(_hand(ring, 7 / 8 * 256 * MIB), rel=1e-9)
    # and the all_gather / broadcast alike
    for kind, factor in (("all_gather", 7 / 8), ("broadcast", 1.0)):
        t = _net().collective_time(kind, 64 * MIB, CommGroup(tuple(range(8))))
        assert t == pytest.approx(_hand(ring, factor * 64 * MIB), rel=1e-9)


def test_all_reduce_on_8_h100_keeps_the_nvls_curve():
    nvls = load_builtin("h100").collectives["nvlink"]
    t = _net().collective_time("all_reduce", 256 * MIB, CommGroup(tuple(range(8))))
    assert t == pytest.approx(_hand(nvls, 2 * 7 / 8 * 256 * MIB), rel=1e-9)
    # 4 GPUs still run NVLS
    t4 = _net().collective_time("all_reduce", 64 * MIB, CommGroup((0, 1, 2, 3)))
    assert t4 == pytest.approx(_hand(nvls, 2 * 3 / 4 * 64 * MIB), rel=1e-9)


def test_all_reduce_on_2_h100_uses_the_ring_curve():
    """NCCL turns NVLS off at two GPUs (src/transport/nvls.cc: gpuCount <= 2)."""
    ring = load_builtin("h100").collectives["nvlink_ring"]
    t = _net().collective_time("all_reduce", 64 * MIB, CommGroup((0, 1)))
    assert t == pytest.approx(_hand(ring, 64 * MIB), rel=1e-9)


def test_nvls_only_for_all_reduce_above_two_gpus_on_nvls_switches():
    h100, a100 = catalog.system("dgx-h100"), catalog.system("dgx-a100")
    assert runs_nvls(h100, "all_reduce", 8) and runs_nvls(h100, "all_reduce", 3)
    assert not runs_nvls(h100, "all_reduce", 2)
    for kind in ("reduce_scatter", "all_gather", "broadcast", "reduce", "all_to_all"):
        assert not runs_nvls(h100, kind, 8)
    assert not runs_nvls(a100, "all_reduce", 8)     # no NVLS on NVSwitch 2


def test_profiles_without_a_ring_curve_keep_nvlink():
    """The A100 profiles' nvlink curves are fitted on ring sweeps: no second curve."""
    prof = load_builtin("a100")
    assert "nvlink_ring" not in prof.collectives
    sys = catalog.system("dgx-a100")
    net = AnalyticalNetwork(ClusterLayout(sys, 1, sys.nic_gbps), prof)
    t = net.collective_time("reduce_scatter", 64 * MIB, CommGroup(tuple(range(8))))
    c = prof.collectives["nvlink"]
    eff = c.eff_max / (1 + (c.bytes_half / (7 / 8 * 64 * MIB)) ** c.gamma)
    assert t == pytest.approx(c.latency_us * 1e-6 + 7 / 8 * 64 * MIB / (sys.scale_up_bw * eff))


def test_ring_plateau_is_the_mean_published_ring_busbw():
    """(370 + 360 + 350 + 367.2 + 361.4 + 362.9) / 6 = 361.92 GB/s = 0.8043 of 450 GB/s;
    the held-out issue-1047 sweep is not among the points."""
    pts = pd.read_csv(REF / H100_RING_POINTS, comment="#")
    assert len(pts) == 6 and "1047" not in (REF / H100_RING_POINTS).read_text().split(
        "Not here on purpose")[0]
    assert ring_plateau(LINK) == pytest.approx(361.9167 / 450, rel=1e-5)
    assert load_builtin("h100").collectives["nvlink_ring"].eff_max == pytest.approx(
        ring_plateau(LINK), rel=1e-4)
    for name in ("b200", "gb200", "gb300"):      # the Blackwell profiles inherit it
        assert (load_builtin(name).collectives["nvlink_ring"]
                == load_builtin("h100").collectives["nvlink_ring"])


def test_held_out_ring_reduce_scatter_sweep_within_3_percent():
    """Issue 1047 (8x H100, NCCL_ALGO=Ring, 128 MiB-8 GiB, 311 -> 362 GB/s busbw):
    predicted 314 -> 358 GB/s, +0.9% at 128 MiB to -1.1% at 8 GiB, geomean 0.5% (the
    NVLS curve gave +10 to +33%, geomean 23.2%)."""
    df = pd.read_csv(REF / H100_RS_RING, comment="#")
    net, g = _net(), CommGroup(tuple(range(8)))
    pred = np.array([7 / 8 * s / net.collective_time("reduce_scatter", float(s), g) / 1e9
                     for s in df.size_bytes])
    ratio = pred / df.busbw_gb_s.to_numpy()
    assert (np.abs(ratio - 1) < 0.03).all()
    assert np.expm1(np.mean(np.abs(np.log(ratio)))) < 0.015


def test_ring_rows_of_the_fit_are_rings():
    """The ring curve's latency and ramp are fitted on the DGX H100 all_reduce sizes NCCL's
    own model runs as ring LL (<= 512 KiB; NVLS from 1 MiB) and on Vidur's 2-GPU all_reduce
    (no NVLS on two GPUs) from 8 MiB: 7 + 7 points."""
    from calibration.collective_fits import RING_LL_MAX_BYTES, h100_ring_points
    from calibration.validate_nccl import network_for, reference_sweeps
    (s,) = [s for s in reference_sweeps() if s.name == "DGX H100 8 GPU NVLS"]
    net, g = network_for(s), CommGroup(tuple(range(8)))
    for size in s.data.size_bytes:
        algo = net.choose("all_reduce", float(size), g).algo
        assert (algo == "ring") == (size <= RING_LL_MAX_BYTES), (size, algo)
    assert net.choose("all_reduce", 64 * MIB, CommGroup((0, 1))).algo == "ring"
    bus, t = h100_ring_points()
    assert len(bus) == len(t) == 14
    assert bus[0] == pytest.approx(2 * 7 / 8 * 8)           # 8 B on 8 GPUs
    assert bus[-1] == pytest.approx(64 * MIB, rel=0.01)      # Vidur's last size, 2 GPUs
