"""The flow tuner's ring inside an NVLS node (DGX H100) reads the per-algorithm curve
``fabric.nvlink.ring.Simple``: the latency and ramp of ``nvlink.Simple`` (fitted on the
NVLS all_reduce sweep) on the published ring plateau (mean of the six ring busbw points
of calibration/reference/collectives/nvlink4_ring_busbw_points.csv over 450 GB/s).
Hand checks against the held-out 8x H100 reduce_scatter (NVIDIA/nccl issue 1047)."""

import pytest

from calibration.validate_nccl import check_sweeps, network_for
from hw_models.profile import load_builtin
from workloads.graph import CommGroup

GIB8 = 8 * 2 ** 30
MIB64 = 64 * 2 ** 20
LINK = 450e9     # 18 NVLink4 links x 25 GB/s per direction per H100
# The six published ring busbw (GB/s): 370, 360, 350, 367.2, 361.4, 362.9 -> mean 361.9167.
PLATEAU = (370.0 + 360.0 + 350.0 + 367.2 + 361.4 + 362.9) / 6 / 450.0   # 0.80426


def _net(name: str = "H100 8 GPU reduce_scatter ring"):
    (s,) = [s for s in check_sweeps() if s.name == name]
    return network_for(s)


def test_h100_ring_curve_is_nvls_ramp_on_published_ring_plateau():
    fab = load_builtin("h100").fabric
    ring, simple = fab["nvlink.ring.Simple"], fab["nvlink.Simple"]
    assert ring.eff_max == pytest.approx(PLATEAU, abs=5e-6)
    assert simple.eff_max < 0.75          # NVLS all_reduce's per-port efficiency
    for name in ("base_us", "step_us", "bytes_half", "gamma"):
        assert getattr(ring, name) == getattr(simple, name)
    for blackwell in ("b200", "gb200", "gb300", "h100-measured"):
        assert load_builtin(blackwell).fabric["nvlink.ring.Simple"] == ring


def test_lookup_per_algorithm_then_per_protocol():
    t = _net().tuner
    assert t.fit("nvlink", "Simple", "ring") is t.fits["nvlink.ring.Simple"]
    assert t.fit("nvlink", "Simple", "nvls") is t.fits["nvlink.Simple"]
    assert t.fit("nvlink", "LL", "ring") is t.fits["nvlink.LL"]
    assert t.fit("network", "Simple", "ring") is t.fits["network.Simple"]


def test_reduce_scatter_8_gib_by_hand():
    """8 GPUs, 8 GiB, ring Simple (factor 1): (7/8) S bus bytes at 450 GB/s over
    eff(S) = 0.80426 / (1 + (649090 / 2^33)^0.39471) = 0.78570, i.e. 353.6 GB/s busbw
    (measured 362.16: -2.4%; on nvlink.Simple's plateau it was 322.6, -10.9%)."""
    net = _net()
    group = CommGroup(tuple(range(8)))
    ch = net.choose("reduce_scatter", GIB8, group)
    assert (ch.algo, ch.proto) == ("ring", "Simple")
    eff = 0.80426 / (1 + (649090 / GIB8) ** 0.39471)
    assert eff == pytest.approx(0.78570, abs=1e-5)
    size_term = 7 / 8 * GIB8 / LINK / eff
    assert ch.time(GIB8) - ch.latency_s == pytest.approx(size_term, rel=1e-3)
    busbw = 7 / 8 * GIB8 / net.collective_time("reduce_scatter", GIB8, group)
    assert busbw / 1e9 == pytest.approx(353.6, rel=2e-3)
    assert busbw / 1e9 == pytest.approx(362.16, rel=0.03)


def test_nvls_all_reduce_keeps_nvlink_simple():
    """The 64 MiB all_reduce on 8 GPUs runs NVLS (NCCL's pick, nothing forced): its time
    does not depend on the ring curve."""
    net = _net("Vidur DGX H100 8 GPU")
    group = CommGroup(tuple(range(8)))
    assert net.choose("all_reduce", MIB64, group).algo == "nvls"
    with_ring = net.collective_time("all_reduce", MIB64, group)
    net.tuner.fits = {k: v for k, v in net.tuner.fits.items() if k != "nvlink.ring.Simple"}
    net.tuner._spb.clear()
    assert net.collective_time("all_reduce", MIB64, group) == with_ring
