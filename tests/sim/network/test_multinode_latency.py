"""Analytical network: collective latency grows with the group as NCCL's model says
(tuning.cc constants, sim/network/collectives/nccl_tuning.yaml), from the two-node
all_reduce the network curve was fitted on. Values computed by hand from the constants."""

import pytest

from hw_models import catalog
from hw_models.profile import load_builtin
from sim.network.analytical import (
    FIT_GROUP,
    AnalyticalNetwork,
    ClusterLayout,
    bus_factor,
    curve_time,
    nccl_latency_us,
)
from workloads.graph import CommGroup


def test_nccl_latency_by_hand():
    # 2 nodes x 8, all_reduce: tree LL 6.8 + 2*7*0.6 + 2*log2(2)*5.0 = 25.2 beats
    # ring LL 6.6 + 28 steps * max(0.6, 1.0) + 2 * 2.7 = 40.0
    assert nccl_latency_us("all_reduce", 16, 2, 8) == pytest.approx(25.2)
    # 48 nodes, one rank each (a DP group under TP 8): ring LL 6.6 + 47 * 2.7
    assert nccl_latency_us("reduce_scatter", 48, 48, 1) == pytest.approx(133.5)
    # 16 nodes x 8 all_reduce: tree 6.8 + 8.4 + 2 * 4 * 5.0
    assert nccl_latency_us("all_reduce", 128, 16, 8) == pytest.approx(55.2)


def net(nodes):
    sys = catalog.system("azure-nd-a100-v4")
    return AnalyticalNetwork(ClusterLayout(sys, nodes, sys.nic_gbps), load_builtin("a100")), sys


def test_fitted_group_is_unchanged():
    n, sys = net(2)
    curve = load_builtin("a100").collectives["network"]
    size = 64 * 2**10
    t = n.collective_time("all_reduce", size, CommGroup(tuple(range(16))))
    assert FIT_GROUP == ("all_reduce", 16, 2, 8)
    # the curve, plus the tree's LL store-and-forward: one chunk over 2 network hops, one
    # transfer more at the fitted hop rate (sim/network/collectives/tree_pipeline.py)
    bus, bw = bus_factor("all_reduce", 16) * size, 8 * n.layout.nic_bw_per_gpu
    assert t == pytest.approx(curve_time(curve, bus, bw) + bus / (bw * curve.ll_hop_eff))


def test_many_node_ring_pays_its_steps():
    n, sys = net(48)
    curve = load_builtin("a100").collectives["network"]
    size = 2**10
    group = CommGroup(tuple(range(0, 48 * 8, 8)))          # one rank per node
    t = n.collective_time("reduce_scatter", size, group)
    # one NIC per ring (8 for the fit group): the ramp is read at 8x the bus bytes
    base = curve_time(curve, bus_factor("reduce_scatter", 48) * size, n.layout.nic_bw_per_gpu, 8)
    # the ring pays NCCL's ring latency less the fit group's tree, whose two network hops
    # carry the curve's fitted per-level extra (ring steps keep NCCL's constants)
    assert t - base == pytest.approx((133.5 - (25.2 + 2 * curve.level_us)) * 1e-6)


def test_curve_fitted_on_another_group_keeps_that_groups_latency():
    """A network curve that names its fit group (four nodes x 8: tree LL 6.8 + 8.4 +
    2 x 2 x 5.0 = 35.2 us) adds NCCL's latency difference from that group, not from the
    echo 16-GPU one (25.2 us): a 48-node one-rank-per-node reduce_scatter of 1 KiB pays
    its curve plus 133.5 - 35.2 us, and the pooled-flow ring latency is the same."""
    from sim.network.analytical import ring_latency_us
    assert nccl_latency_us("all_reduce", 32, 4, 8) == pytest.approx(35.2)
    sys = catalog.system("azure-nd-a100-v4")
    prof = load_builtin("a100")
    curve = prof.collectives["network"].model_copy(
        update={"latency_us": 30.0, "fit_group": ("all_reduce", 32, 4, 8), "level_us": 0.0})
    prof = prof.model_copy(update={"collectives": {**prof.collectives, "network": curve}})
    n = AnalyticalNetwork(ClusterLayout(sys, 48, sys.nic_gbps), prof)
    group = CommGroup(tuple(range(0, 48 * 8, 8)))
    size = 2 ** 10
    t = n.collective_time("reduce_scatter", size, group)
    bw = n.layout.nic_bw_per_gpu
    want = curve_time(curve, 47 / 48 * size, bw, 8) + (133.5 - 35.2) * 1e-6
    assert t == pytest.approx(want)
    assert ring_latency_us(curve, "reduce_scatter", 48, 48, 1) == pytest.approx(30.0 + 98.3)
    # on a smaller group the difference is negative, never below zero in all
    assert ring_latency_us(curve, "all_reduce", 2, 2, 1) >= 0.0
