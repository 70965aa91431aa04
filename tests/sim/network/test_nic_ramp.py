"""The scale-out curve's size ramp is read at the bytes each NIC carries, scaled to the group
the curve was fitted on (sim/network/analytical.py nic_ramp_scale): NCCL binds each ring
channel to one NIC, so a ring whose ranks reach one NIC per domain pipelines 8x the bytes per
channel of the 8-NIC fit ring at equal bus bytes. Values computed by hand from the h100
profile's network curve (eff_max 0.87466, bytes_half 64.427e6, gamma 0.65897; fitted on
4 nodes x 8 H100) and the DGX H100's 8 x 400 Gb/s NICs (50 GB/s per GPU)."""

import pytest

from hw_models import catalog
from hw_models.profile import load_builtin
from sim.network.analytical import (
    AnalyticalNetwork,
    ClusterLayout,
    nic_ramp_scale,
)
from sim.network.collectives.base import get
from workloads.graph import CommGroup


def h100_net(nodes):
    sys = catalog.system("dgx-h100")
    return AnalyticalNetwork(ClusterLayout(sys, nodes, sys.nic_gbps), load_builtin("h100"))


def test_ramp_scale_is_the_fit_groups_nics_over_this_rings():
    curve = load_builtin("h100").collectives["network"]
    assert curve.fit_group == ("all_reduce", 32, 4, 8)
    # 8 x 50 GB/s = 400 GB/s under the 450 GB/s NVLink cap: 8 NICs for the fit group
    assert nic_ramp_scale(curve, 450e9, 8, 50e9) == pytest.approx(1.0)
    assert nic_ramp_scale(curve, 450e9, 1, 50e9) == pytest.approx(8.0)
    assert nic_ramp_scale(curve, 450e9, 2, 50e9) == pytest.approx(4.0)
    # the A100 curves' fit group (echo 2 nodes x 8, 8 x 25 GB/s under 300 GB/s): 1 and 8
    a100 = load_builtin("a100").collectives["network"]
    assert a100.fit_group is None
    assert nic_ramp_scale(a100, 300e9, 8, 25e9) == pytest.approx(1.0)
    assert nic_ramp_scale(a100, 300e9, 1, 25e9) == pytest.approx(8.0)
    # a domain whose NVLink forwards less than its NICs (72 x 50 GB/s > 900 GB/s) counts
    # the 18 NICs' worth it can feed, as ring_link_bw does: 8 / 18
    assert nic_ramp_scale(curve, 900e9, 72, 50e9) == pytest.approx(8 / 18)


def test_one_nic_dp_ring_reads_the_ramp_at_8x_its_bus_bytes():
    """48 nodes, one rank each (the DP ring of a TP 8 plan), reduce_scatter of 64 MiB:
    bus bytes 47/48 x 64 MiB = 65,710,763; eff at 8x those = 0.87466 / (1 + (64.427e6 /
    525.69e6)^0.65897) = 0.69931 (0.44017 at the bus bytes themselves). Time: curve latency
    35.501 us + NCCL latency 133.5 (48-step LL ring) - 35.2 (fit group's tree) us + bus /
    (50 GB/s x 0.69931) = 1.87931 ms -> 2.01311 ms (2.99 ms of bandwidth term before)."""
    net = h100_net(48)
    t = net.collective_time("reduce_scatter", 64 * 2**20, CommGroup(tuple(range(0, 384, 8))))
    bw_term = 65_710_762.67 / (50e9 * 0.6993073)
    assert bw_term == pytest.approx(1.87931e-3, rel=1e-5)
    assert t == pytest.approx((35.501 + 133.5 - 35.2) * 1e-6 + bw_term, rel=1e-5)


def test_fit_group_is_unchanged():
    """4 nodes x 8, all_reduce of 64 MiB (the fit sweep's own group): bus bytes 62/32 x
    64 MiB = 130,023,424; eff there = 0.87466 / (1 + (64.427e6 / 130.02e6)^0.65897) =
    0.53674; 8 NICs of 50 GB/s; the curve's own latency (NCCL's difference is zero)."""
    net = h100_net(4)
    t = net.collective_time("all_reduce", 64 * 2**20, CommGroup(tuple(range(32))))
    assert t == pytest.approx(35.501e-6 + 130_023_424 / (400e9 * 0.5367425), rel=1e-5)


def test_all_to_all_keeps_its_ramp_at_the_bytes_off_the_domain():
    """NCCL's all_to_all is grouped send/recv with channels per peer, not ring channels
    per NIC: 4 nodes x 8, 64 MiB per rank, 24/32 of it leaves the node over the GPU's one
    NIC (50 GB/s) with eff read at those 50,331,648 bytes: 0.87466 / (1 + (64.427e6 /
    50.33e6)^0.65897) = 0.40183. Its latency is one network step's, not the fit group's
    tree: 35.501 + (6.6 + 2.7) - 35.2 (NCCL's LL tree on 4 x 8) = 9.601 us."""
    net = h100_net(4)
    t = net.collective_time("all_to_all", 64 * 2**20, CommGroup(tuple(range(32))))
    assert t == pytest.approx(9.601e-6 + 50_331_648 / (50e9 * 0.4018317), rel=1e-5)


# The flow model's tuner reads the h100 profile's fabric.network.* ramps the same way
# (Tuner.nic_ramp). Hand values from the fabric.network.Simple curve (eff_max 0.87467,
# bytes_half 91.295, gamma 0.2) and network.LL128 (eff_max 1.5, bytes_half 335.45e6,
# gamma 0.41615), both fitted on 4 nodes x 8 H100 (fit_group).

def h100_flow(nodes):
    from sim.network.flow import FlowNetwork
    sys = catalog.system("dgx-h100")
    return FlowNetwork(ClusterLayout(sys, nodes, sys.nic_gbps), load_builtin("h100"), {})


def test_fabric_network_curves_record_their_fit_group():
    fab = load_builtin("h100").fabric
    assert {fab[f"network.{p}"].fit_group for p in ("LL", "LL128", "Simple")} == {
        ("all_reduce", 32, 4, 8)}
    assert load_builtin("a100").fabric["network.Simple"].fit_group is None   # echo 2 x 8


def test_flow_one_nic_ring_reads_the_fabric_ramp_at_8x_the_buffer():
    """32 nodes, one rank each, reduce_scatter of 160 MiB: NCCL's model runs ring/Simple
    (protocol factor 1). eff at 8 x 167,772,160 B = 0.87754 / (1 + (182.98 /
    1.34218e9)^0.2) = 0.84188 (0.82460 at the buffer itself): 1.18782 wire bytes per byte."""
    net = h100_flow(32)
    ranks = tuple(range(0, 256, 8))
    ch = net.choose("reduce_scatter", 160 * 2**20, CommGroup(ranks))
    assert (ch.algo, ch.proto) == ("ring", "Simple")
    assert ch.wire_factor == pytest.approx(1 / 0.841881, rel=1e-5)
    tuner = net.tuner
    ctx = tuner.ctx("reduce_scatter", 160 * 2**20, ranks)
    assert tuner.nic_ramp(get("ring"), tuner.fit("network", "Simple", "ring"), ctx) == 8.0


def test_flow_ll128_ring_moves_by_the_ramp_ratio_only():
    """16 MiB on the same ring runs ring/LL128: the wire factor moves from 1 / (f eff(S))
    to 1 / (f eff(8S)), i.e. by eff(S) / eff(8S) = [1.5 / (1 + (310.8e6 / 16.777e6)^0.42665)]
    / [1.5 / (1 + (310.8e6 / 134.22e6)^0.42665)] = 0.33523 / 0.61707 = 0.54326."""
    net = h100_flow(32)
    g = CommGroup(tuple(range(0, 256, 8)))
    new = net.choose("all_gather", 16 * 2**20, g)
    net.tuner.nic_bw_per_gpu = 0.0          # no NICs known: the ramp read at the buffer
    net._choices.clear()
    old = net.choose("all_gather", 16 * 2**20, g)
    assert (new.algo, new.proto) == (old.algo, old.proto) == ("ring", "LL128")
    assert new.wire_factor / old.wire_factor == pytest.approx(0.54326, rel=1e-4)


def test_flow_fit_group_and_two_per_node():
    """The fit sweep's own group (4 nodes x 8) reads the ramp at the buffer: a 160 MiB
    all_gather is ring/Simple with 1 / eff(S) = 1 / 0.82460 wire bytes per byte, as before.
    Two ranks per node reach 2 NICs: 4x."""
    net = h100_flow(4)
    ch = net.choose("all_gather", 160 * 2**20, CommGroup(tuple(range(32))))
    assert (ch.algo, ch.proto) == ("ring", "Simple")
    assert ch.wire_factor == pytest.approx(1 / 0.824600, rel=1e-5)
    tuner = net.tuner
    curve = tuner.fit("network", "Simple", "ring")
    two = tuner.ctx("all_reduce", 1.0, tuple(range(0, 32, 4)))
    assert tuner.nic_ramp(get("ring"), curve, two) == 4.0
    assert tuner.nic_ramp(get("tree"), curve, two) == 4.0


def test_flow_all_to_all_and_sendrecv_keep_the_ramp_at_their_bytes():
    """Per-peer p2p channels, not NIC-bound graph channels: no scaling, as analytical."""
    tuner = h100_flow(4).tuner
    curve = tuner.fit("network", "Simple", "direct")
    a2a = tuner.ctx("all_to_all", 1.0, tuple(range(0, 32, 8)))
    p2p = tuner.ctx("sendrecv", 1.0, (0, 8))
    assert tuner.nic_ramp(get("direct"), curve, a2a) == 1.0
    assert tuner.nic_ramp(get("p2p"), curve, p2p) == 1.0
    assert tuner.nic_ramp(get("ring"), curve, a2a) == 8.0
