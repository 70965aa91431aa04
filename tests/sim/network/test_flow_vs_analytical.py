"""Flow vs analytical on isolated collectives (no contention), and NCCL's double tree.

Both fidelities of the a100 profile fit their inter-node curves on the same echo
16-GPU nccl-tests log (collectives.network for the analytical model, fabric.network.*
for the flow model), so without contention they must agree on a collective across
nodes, at 2 nodes and when the same group shape is scaled out to 16.
"""

import numpy as np
import pytest

from calibration.validate_nccl import reference_sweeps
from hw_models import catalog
from hw_models.profile import load_builtin
from sim.network.analytical import AnalyticalNetwork, ClusterLayout
from sim.network.collectives.base import get
from sim.network.collectives.tree import tree_edges
from sim.network.flow import FlowNetwork
from workloads.graph import CommGroup

A100 = catalog.system("dgx-a100")


def nets(nodes):
    layout = ClusterLayout(A100, nodes, A100.nic_gbps)
    prof = load_builtin("a100")
    return AnalyticalNetwork(layout, prof), FlowNetwork(layout, prof, {})


@pytest.mark.parametrize("stride", [1, 4, 8])      # 8, 2 or 1 ranks per node (TP 1, 4, 8)
def test_dp_all_reduce_1gb_16_nodes_agrees(stride):
    an, fl = nets(16)
    group = CommGroup(tuple(range(0, 128, stride)))
    ta = an.collective_time("all_reduce", 1e9, group)
    tf = fl.collective_time("all_reduce", 1e9, group)
    assert tf == pytest.approx(ta, rel=0.05)


def test_echo_16gpu_sizes_flow_vs_fitted_curve():
    """On the sizes of the sweep both curves were fitted to, the tuner's time and the
    analytical curve agree (geomean within 6%, each point within 25%)."""
    sweep = next(s for s in reference_sweeps() if s.gpus == 16)
    an, fl = nets(2)
    group = CommGroup(tuple(range(16)))
    sizes = sweep.data.size_bytes.to_numpy(float)
    ratio = np.array([fl.collective_time("all_reduce", s, group)
                      / an.collective_time("all_reduce", s, group) for s in sizes[sizes >= 1e6]])
    assert np.expm1(np.mean(np.abs(np.log(ratio)))) < 0.06
    assert 0.75 < ratio.min() and ratio.max() < 1.25


@pytest.mark.parametrize("m", [2, 3, 4, 7, 8, 16, 33])
def test_double_tree_is_two_spanning_trees_inner_in_one(m):
    """NCCL's trees (trees.cc): every domain but the root has one parent, at most two
    children; for an even count no domain is inner in both trees."""
    inner = []
    for t in (0, 1):
        e = tree_edges(m, t)
        children = [c for _, c in e]
        assert len(children) == len(set(children)) == m - 1
        assert max(np.bincount([p for p, _ in e])) <= 2
        inner.append({p for p, _ in e})
    if m % 2 == 0:
        assert not inner[0] & inner[1]


@pytest.mark.parametrize("stride", [1, 8])
def test_double_tree_bandwidth_matches_ring_across_16_nodes(stride):
    """Per NIC a double binary tree moves ~2S (inner in one tree, leaf in the other),
    the ring 2(n-1)/n S: the contention-free time per byte agrees to n/(n-1)."""
    _, fl = nets(16)
    ranks = tuple(range(0, 128, stride))
    ctx = fl.tuner.ctx("all_reduce", 1.0, ranks)
    ratio = fl.tuner.seconds_per_byte(get("tree"), ctx) / fl.tuner.seconds_per_byte(get("ring"), ctx)
    assert ratio == pytest.approx(len(ranks) / (len(ranks) - 1), rel=0.02)
