"""NVLS all_reduce: its efficiency ramp is read at the per-rank slice S/n (each GPU
reduces and multicasts only 1/n of the buffer), ring's at the buffer S
(sim/network/collectives/tuner.py ``ramp_bytes``). Hand checks on DGX H100 groups against
Vidur's PyTorch-timed all_reduce (calibration/reference/vidur/network/h100_dgx_all_reduce.csv),
which the h100 profile is not fitted on."""

import pytest

from calibration.validate_nccl import check_sweeps, network_for
from sim.network.analytical import bus_factor
from sim.network.collectives.tuner import ramp_bytes
from workloads.graph import CommGroup

MIB64 = 64 * 2 ** 20


def test_ramp_size_is_the_slice_for_nvls_only():
    assert ramp_bytes("nvls", 8e6, 4) == 2e6
    assert ramp_bytes("ring", 8e6, 4) == 8e6
    assert ramp_bytes("nvls", 8e6, 1) == 8e6


def _sweep(n):
    (s,) = [s for s in check_sweeps() if s.gpus == n and s.name.startswith("Vidur")]
    return s


def test_nvls_size_term_by_hand_on_4_h100():
    """4 GPUs, 64 MiB, Simple: port bytes (1 + 1/4) S at 450 GB/s (18 NVLink4 x 25 GB/s)
    divided by eff(S/4) of the profile's nvlink.Simple curve, plus the latency."""
    net = network_for(_sweep(4))
    ch = net.choose("all_reduce", MIB64, CommGroup((0, 1, 2, 3)))
    assert (ch.algo, ch.proto) == ("nvls", "Simple")
    curve = net.tuner.fit("nvlink", "Simple", "nvls")
    hand = 1.25 * MIB64 / 450e9 / curve.eff(MIB64 / 4)
    assert ch.time(MIB64) - ch.latency_s == pytest.approx(hand, rel=1e-6)


@pytest.mark.parametrize(("n", "algo", "measured_busbw", "tol"), [
    # 245 us measured: NVLS needs more than 2 GPUs. The ring runs on nvlink.ring.Simple (the
    # published ring plateau on nvlink.Simple's ramp): predicted 6.4% fast (291 GB/s); on
    # nvlink.Simple's NVLS plateau it was 2.3% slow (docs/fabric.md, "H100 in one node").
    (2, "ring", 273.9, 0.07),
    (4, "nvls", 316.6, 0.10),   # 318 us measured; predicted 8% slow (docs/accuracy.md)
])
def test_h100_group_busbw_at_64_mib(n, algo, measured_busbw, tol):
    net = network_for(_sweep(n))
    group = CommGroup(tuple(range(n)))
    assert net.choose("all_reduce", MIB64, group).algo == algo
    busbw = bus_factor("all_reduce", n) * MIB64 / net.collective_time("all_reduce", MIB64, group)
    assert busbw / 1e9 == pytest.approx(measured_busbw, rel=tol)


def test_no_nvls_on_two_gpus():
    """NCCL turns NVLS off for two GPUs (src/transport/nvls.cc: gpuCount <= 2)."""
    from hw_models.errors import ClusterSimError
    net = network_for(_sweep(2))
    with pytest.raises(ClusterSimError, match="not available"):
        net.tuner.choose("all_reduce", MIB64, (0, 1), algo="nvls")
