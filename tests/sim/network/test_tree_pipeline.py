"""The tree all_reduce's LL store-and-forward across its network levels
(sim/network/collectives/tree_pipeline.py). Values by hand from NCCL's constants
(NVIDIA/nccl 5067397c): LL buffer 8 lines x 512 threads x 8 steps x 16 B = 512 KiB, one
step 64 KiB of lines, 32 KiB of data per chunk; channels trimmed while bytes < channels x
512 threads x 8 B. A pipeline of k chunks over H store-and-forward hops takes
(k + H - 1) chunk-times where a stream takes k."""

import numpy as np
import pytest

from hw_models import catalog
from hw_models.profile import FabricCurve, load_builtin
from sim.network.analytical import AnalyticalNetwork, ClusterLayout, bus_factor, tree_ll_hops
from sim.network.collectives import tree_pipeline as tp
from sim.network.collectives.base import get
from sim.network.flow import FlowNetwork
from workloads.graph import CommGroup

SYSTEM = "azure-nd-a100-v4"     # 8 A100 and 8 HDR NICs per node (the echo logs' cluster)


def test_chunk_and_channels_from_nccl_constants():
    assert tp.chunk_bytes("LL") == 8 * 512 * 8 * 16 / 8 / 2 == 32768
    # 4 KiB per channel: 2 KiB on one channel, 64 KiB on 16, 1 MiB on the 16 there are
    assert [tp.channels("LL", s, 16) for s in (2048, 8192, 65536, 2 ** 20)] == [1, 2, 16, 16]
    # one chunk per channel up to 16 x 32 KiB, then two
    assert tp.chunks("LL", 128 * 1024, 16) == 1 and tp.chunks("LL", 2 ** 20, 16) == 2


@pytest.mark.parametrize(("nodes", "nbytes", "k"), [(8, 2 ** 20, 2), (8, 65536, 1),
                                                     (2, 65536, 1), (16, 2 ** 20, 2)])
def test_pipelined_tree_by_hand(nodes, nbytes, k):
    """Depth log2(nodes), H = 2 x depth hops (up and back down). Two chunks over depth 3
    (8 nodes, 1 MiB on 16 channels: 64 KiB each): (2 + 6 - 1) = 7 chunk-times against 2
    streamed, 2.5 transfers of the whole more; one chunk over depth 1: 2 hops, 1 more."""
    hops = 2 * np.log2(nodes)
    assert tp.network_hops(nodes) == hops
    assert tp.extra_chunk_times("LL", nbytes, nodes, 16) == pytest.approx((hops - 1) / k)
    assert 1 + (hops - 1) / k == pytest.approx((k + hops - 1) / k)
    assert tp.extra_chunk_times("LL128", nbytes, nodes, 16) == 0.0
    assert tp.extra_chunk_times("LL", nbytes, 1, 16) == 0.0


def _flow_tuner(nodes, fabric):
    sys = catalog.system(SYSTEM)
    prof = load_builtin("a100").model_copy(update={"fabric": fabric})
    return FlowNetwork(ClusterLayout(sys, nodes, sys.nic_gbps), prof).tuner


def test_flow_tree_ll_size_term_is_k_plus_h_minus_1_chunk_times():
    """A flat LL ramp (the streamed size term at the plateau): the tree's wire factor on
    8 nodes at 1 MiB is (2 + 6 - 1) / 2 = 3.5 times the streamed one, the ring's 1."""
    flat = FabricCurve(eff_max=0.5, bytes_half=0.0)
    t = _flow_tuner(8, {"network.LL": flat})
    ctx = t.ctx("all_reduce", float(2 ** 20), tuple(range(64)))
    tree, ring = get("tree"), get("ring")
    assert t.pipeline(tree, "LL", ctx) == pytest.approx(2.5)
    streamed = 1 / (t.protocol_factor(tree, "LL", ctx) * 0.5)
    assert t.wire_factor(tree, "LL", ctx) == pytest.approx(3.5 * streamed)
    assert t.pipeline(ring, "LL", ctx) == 0.0
    assert t.pipeline(tree, "LL128", ctx) == 0.0


@pytest.mark.parametrize(("gpus", "nbytes", "hops"), [(64, 65536, 5.0), (16, 65536, 1.0),
                                                      (128, 4096, 7.0), (64, 2 ** 18, 0.0)])
def test_analytical_tree_ll_hops(gpus, nbytes, hops):
    """Where NCCL's model runs the tree with LL (up to 128 KiB on these groups; LL128 from
    256 KiB) a 4 KiB-per-channel message is one chunk: H - 1 extra transfers."""
    sys = catalog.system(SYSTEM)
    nodes = gpus // 8
    layout = ClusterLayout(sys, nodes, sys.nic_gbps)
    assert tree_ll_hops(layout, "all_reduce", nbytes, gpus, nodes, 8) == hops
    assert tree_ll_hops(layout, "reduce_scatter", nbytes, gpus, nodes, 8) == 0.0


def test_analytical_store_and_forward_term_by_hand():
    """The a100 network curve's fitted hop rate: on 8 nodes a 64 KiB all_reduce pays
    5 x bus bytes / (8 NICs x 25 GB/s x ll_hop_eff) over the same curve without it."""
    prof = load_builtin("a100")
    curve = prof.collectives["network"]
    assert 0 < curve.ll_hop_eff < 1
    off = prof.model_copy(update={"collectives": dict(prof.collectives) | {
        "network": curve.model_copy(update={"ll_hop_eff": None})}})
    sys = catalog.system(SYSTEM)
    layout = ClusterLayout(sys, 8, sys.nic_gbps)
    g = CommGroup(tuple(range(64)))
    t_on = AnalyticalNetwork(layout, prof).collective_time("all_reduce", 65536.0, g)
    t_off = AnalyticalNetwork(layout, off).collective_time("all_reduce", 65536.0, g)
    bus = bus_factor("all_reduce", 64) * 65536
    assert t_on - t_off == pytest.approx(5 * bus / (8 * 25e9 * curve.ll_hop_eff))
