"""TP collectives on non-NVIDIA scale-up fabrics: the flow model's rings on an xGMI full
mesh use every link (RCCL's disjoint rings), the analytical model gives a subgroup of a
mesh only its links, and the two fidelities agree on an 8-GPU TP all-reduce on MI300X and
CloudMatrix384 as closely as they do on DGX H100 (they differed 6-8x before)."""

import pytest

from hw_models import catalog, profile
from sim.network.analytical import AnalyticalNetwork, ClusterLayout
from sim.network.flow import FlowNetwork
from workloads.graph import CommGroup


def nets(system):
    s = catalog.system(system)
    lay = ClusterLayout(s, 1, s.nic_gbps)
    prof = profile.load(s.default_profile)
    return FlowNetwork(lay, prof, {"algo": "ring"}), AnalyticalNetwork(lay, prof), s


@pytest.mark.parametrize("k, links", [(8, 7), (4, 2), (2, 1)])
def test_flow_ring_on_xgmi_mesh_uses_its_disjoint_links(k, links):
    flow, _, s = nets("mi300x-8")
    group = tuple(range(k))
    ch = flow.choose("all_reduce", 1 << 28, CommGroup(group))
    # ring all_reduce sends 2(k-1)/k of the buffer per GPU over `links` links of 448/7 GB/s
    per_link = s.scale_up.gb_s_per_gpu * 1e9 / 7
    assert ch.seconds_per_byte == pytest.approx(2 * (k - 1) / k / (links * per_link))


@pytest.mark.parametrize("k, links", [(8, 7), (4, 2), (2, 1)])
def test_analytical_mesh_subgroup_bandwidth(k, links):
    _, ana, s = nets("mi300x-8")
    assert ana.domain_bw(k) == pytest.approx(links * s.scale_up.gb_s_per_gpu * 1e9 / 7)


def ratios(system, k=8):
    flow, _, _ = nets(system)
    flow = FlowNetwork(flow.layout, flow.profile)          # NCCL's own choice of algorithm
    _, ana, _ = nets(system)
    g = CommGroup(tuple(range(k)))
    return [flow.collective_time("all_reduce", b, g) / ana.collective_time("all_reduce", b, g)
            for b in (1 << 20, 1 << 24, 1 << 28)]


@pytest.mark.parametrize("system", ["mi300x-8", "ascend-910c-384"])
def test_tp8_all_reduce_flow_and_analytical_agree_like_on_h100(system):
    # DGX H100: a 2-GPU ring 0.93 / 1.05 / 1.12 at 1 MiB / 16 MiB / 256 MiB (the fabric curve of
    # ring Simple vs the analytical ring curve), 8 GPUs on NVLS 1.22 / 0.99 / 0.99; here (no
    # NVLS: the analytical ring curve) 0.83-0.85 / 0.94-0.97 / 1.17 (before the mesh fix:
    # 4.6x and 6-8x in a training step; on the NVLS curve 0.73-0.78 / 0.90-0.93 / 1.51)
    for r in ratios(system):
        assert 0.6 < r < 1.6, ratios(system)


def test_no_fabric_curve_without_measurements():
    # The DGX H100 sweep never runs ring/tree LL128 (NCCL picks LL, then NVLS): no curve,
    # the tuner uses NCCL's constants; an 8-GPU all_gather at 4 MiB stays tens of us
    assert "nvlink.LL128" not in profile.load("h100").fabric
    flow, _, _ = nets("dgx-h100")
    flow = FlowNetwork(flow.layout, flow.profile)
    assert flow.collective_time("all_gather", 1 << 22, CommGroup(tuple(range(8)))) < 60e-6
