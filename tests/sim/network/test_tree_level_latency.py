"""Multi-node latency that grows with the node count: the a100 network curves are fitted on
the echo ND A100 v4 all_reduce logs at 2 and 8 nodes x 8 GPUs, which separate the base
latency from the per-tree-level one. Values by hand from NCCL's constants
(sim/network/collectives/nccl_tuning.yaml: tree LL base 6.8 us, 0.6 us per NVLink hop,
5.0 us per network hop) and the a100 profile's fitted extras; measured small-size floor
of the logs: 4 KiB in 38.18 us on 2 nodes and 76.80 us on 8 (9.65 us per tree level)."""

import math

import pytest

from hw_models import catalog
from hw_models.profile import load_builtin
from sim.network.analytical import AnalyticalNetwork, ClusterLayout, nccl_latency_us
from sim.network.collectives.base import get
from sim.network.flow import FlowNetwork
from workloads.graph import CommGroup


def tuner(nodes):
    sys = catalog.system("azure-nd-a100-v4")
    return FlowNetwork(ClusterLayout(sys, nodes, sys.nic_gbps), load_builtin("a100")).tuner


def tree_ll_us(nodes):
    t = tuner(nodes)
    ctx = t.ctx("all_reduce", 4096.0, tuple(range(8 * nodes)))
    return t.latency(get("tree"), "LL", ctx) * 1e6


def test_fitted_constants_separate_base_and_level():
    fab = load_builtin("a100").fabric
    step = fab["network.LL"].step_us
    # one network step shared by every protocol, fitted (no longer NCCL's -2.7 floor)
    assert {fab[f"network.{p}"].step_us for p in ("LL", "LL128", "Simple")} == {step}
    # per tree level: NCCL's 5.0 us plus the fitted step, near the logs' 9.65 us at 4 KiB
    # less what the tree's store-and-forward hops carry there (tree_pipeline.py)
    assert 8.0 <= 5.0 + step <= 10.5


@pytest.mark.parametrize("nodes", [2, 8])
def test_tuner_tree_ll_latency_by_hand(nodes):
    fab = load_builtin("a100").fabric
    base, step = fab["network.LL"].base_us, fab["network.LL"].step_us
    nvl_step = fab["nvlink.LL"].step_us
    # base + 2(local-1) NVLink hops + 2 log2(nodes) network hops, each with its extra
    want = 6.8 + base + 2 * 7 * (0.6 + nvl_step) + 2 * math.log2(nodes) * (5.0 + step)
    assert tree_ll_us(nodes) == pytest.approx(want, rel=1e-9)


def test_tree_ll_latency_grows_as_measured():
    # 2 -> 8 nodes: 4 more network hops; the logs' 4 KiB rows rise 38.6 us (9.65 a hop)
    lat2, lat8 = tree_ll_us(2), tree_ll_us(8)
    assert lat8 - lat2 == pytest.approx(4 * (5.0 + load_builtin("a100").fabric[
        "network.LL"].step_us))
    assert lat2 == pytest.approx(38.18, rel=0.1)
    assert lat8 == pytest.approx(76.80, rel=0.1)


def test_analytical_level_extra_by_hand():
    """The analytical curve's ``level_us`` is added to each of the tree's 2 log2(nodes)
    network hops: NCCL's tree on 8 x 8 is 6.8 + 14 x 0.6 + 6 x 5.0 = 45.2 us, on 2 x 8
    25.2 us; the ring (a reduce_scatter) keeps NCCL's constants."""
    assert nccl_latency_us("all_reduce", 64, 8, 8, level_us=2.0) == pytest.approx(45.2 + 12.0)
    assert nccl_latency_us("all_reduce", 16, 2, 8, level_us=2.0) == pytest.approx(25.2 + 4.0)
    assert nccl_latency_us("reduce_scatter", 48, 48, 1, level_us=2.0) == pytest.approx(133.5)


def test_analytical_all_reduce_moves_by_the_fitted_level():
    curve = load_builtin("a100").collectives["network"]
    assert curve.level_us > 0
    sys = catalog.system("azure-nd-a100-v4")
    size = 4096.0
    t = {}
    for nodes in (2, 8):
        net = AnalyticalNetwork(ClusterLayout(sys, nodes, sys.nic_gbps), load_builtin("a100"))
        t[nodes] = net.collective_time("all_reduce", size, CommGroup(tuple(range(8 * nodes))))
    # same ramp point up to the bus factor (15/8 vs 63/32 of 4 KiB): the latency moves by
    # 4 levels x (5.0 + level_us), the size term by its bus bytes; the tree's LL chunk
    # (one per channel) crosses 2 log2(nodes) network hops, 1 / 5 transfers more than a
    # stream at the fitted hop rate
    bw = 8 * ClusterLayout(sys, 2, sys.nic_gbps).nic_bw_per_gpu
    bus = {n: 2 * (8 * n - 1) / (8 * n) * size for n in (2, 8)}
    hops = {2: 1, 8: 5}
    size_term = {n: bus[n] / (bw * curve.eff(bus[n])) + hops[n] * bus[n] / (
        bw * curve.ll_hop_eff) for n in (2, 8)}
    assert (t[8] - size_term[8]) - (t[2] - size_term[2]) == pytest.approx(
        4 * (5.0 + curve.level_us) * 1e-6)
