"""DeepEP's dispatch / combine cost (sim/network/deepep.py) by hand, the SMs its normal
kernels hold beside overlapped compute (sim/costs.py), and one clear error for a bad
``workload.moe`` value."""

import sys

import pytest

from hw_models import catalog, profile
from hw_models.compute import ComputeModel
from hw_models.topology import fabric_defaults
from sim.cli.main import main
from sim.costs import OpCosts
from sim.network import AnalyticalNetwork, ClusterLayout
from sim.network.deepep import dispatch_time
from workloads.graph import Block, CommGroup, Compute, ExpertDispatch


def _layout(nodes: int) -> ClusterLayout:
    s = catalog.system("hgx-h800")          # 8 GPUs, 200 GB/s NVLink, one 400 Gb/s NIC each
    return ClusterLayout(s, nodes, s.nic_gbps)


def test_catalog_figures_the_cost_uses():
    s = catalog.system("hgx-h800")
    assert (s.scale_up_bw, s.nic_bw_per_gpu) == (200e9, 50e9)
    assert (s.scale_up.hop_latency_us, s.nic_hop_latency_us) == (3.4, 14.0)
    assert fabric_defaults()["nic_achievable_frac"] == 0.95


def test_normal_kernels_pipeline_their_two_phases():
    """4 nodes, rail group (0, 8, 16, 24): 400 MB buffer, 3/4 of it leaves the node at
    0.95 x 50 GB/s = 6.3158 ms; 800 MB over NVLink at 200 GB/s (no p2p curve) = 4 ms;
    10 chunks: fill 0.4 ms; latency 3.4 + 14 us. 6.3158 + 0.4 + 0.0174 = 6.7332 ms (the
    two phases one after the other would take 10.33 ms)."""
    op = ExpertDispatch("all_to_all", 400e6, CommGroup((0, 8, 16, 24), "ep"), nvl_bytes=800e6,
                        chunks=10)
    t = dispatch_time(_layout(4), None, op)
    assert t == pytest.approx(300e6 / 47.5e9 + 0.4e-3 + 17.4e-6, rel=1e-9)
    assert t == pytest.approx(6.7332e-3, rel=1e-4)


def test_low_latency_kernels_have_no_fill_and_nvlink_phase_can_bound():
    """Low-latency: every copy straight to its rank, max of the phases + latency. 64 ranks
    on 8 nodes: 7/8 of 8 MB leave the node (147.4 us at 47.5 GB/s); 1 MB of NVLink
    (5 us) runs beside it."""
    op = ExpertDispatch("all_to_all", 8e6, CommGroup(tuple(range(64)), "ep"), nvl_bytes=1e6,
                        low_latency=True, chunks=10)
    t = dispatch_time(_layout(8), None, op)
    assert t == pytest.approx(7e6 / 47.5e9 + 17.4e-6, rel=1e-9)
    inside = ExpertDispatch("all_to_all", 0.0, CommGroup(tuple(range(8)), "ep"), nvl_bytes=1e6)
    assert dispatch_time(_layout(1), None, inside) == pytest.approx(1e6 / 200e9 + 3.4e-6, rel=1e-9)


def test_nvlink_phase_uses_the_profiles_point_to_point_efficiency():
    prof = profile.load("h100")
    c = prof.fabric["nvlink.p2p"]
    eff = c.eff_max / (1 + (c.bytes_half / 800e6) ** c.gamma)
    op = ExpertDispatch("all_to_all", 0.0, CommGroup(tuple(range(8)), "ep"), nvl_bytes=800e6)
    assert dispatch_time(_layout(1), prof, op) == pytest.approx(800e6 / (200e9 * eff) + 3.4e-6)
    assert 0.75 < eff < 0.85           # ~160 GB/s on H800, DeepSeek-V3 report section 3.2.2


def test_internode_forwarding_is_capped_by_the_kernels_sms():
    """With the h100 profile's fitted 5.6267 GB/s per SM, 20 SMs move at most 112.5 GB/s
    over NVLink in the internode kernel, below NVLink's point-to-point rate on H200
    (450 GB/s x ~0.8): 1.125 GB over NVLink takes 10 ms, the 50 MB that leave the node
    0.95 ms, one of 1000 chunks of it fills the pipeline."""
    prof = profile.load("h100")
    assert prof.deepep.nvl_gb_s_per_sm == pytest.approx((124.92 + 145.16) / 2 / 24, abs=1e-4)
    s = catalog.system("dgx-h200")
    op = ExpertDispatch("all_to_all", 100e6, CommGroup((0, 8), "ep"), nvl_bytes=1.125e9,
                        chunks=1000, sms=20)
    t_rdma = 50e6 / 47.5e9
    t_nvl = 1.125e9 / (20 * prof.deepep.nvl_gb_s_per_sm * 1e9)
    assert t_nvl == pytest.approx(10e-3, rel=1e-3)
    got = dispatch_time(ClusterLayout(s, 2, s.nic_gbps), prof, op)
    assert got == pytest.approx(t_nvl + t_rdma / 1000 + 17.4e-6, rel=1e-9)



@pytest.mark.parametrize("ranks, dispatch, combine", [(8, 764.03, 737.13), (16, 706.95, 666.26),
                                                      (24, 665.97, 639.80), (36, 632.31, 596.99)])
def test_hybridep_inside_one_nvl72_domain_runs_at_its_published_rate(ranks, dispatch, combine):
    """HybridEP inside one NVLink domain: nvl_bytes over its published algorithm bandwidth at
    the domain's ranks and 32 SMs (hw_models/data/hybridep.yaml), no latency added (the
    published time is the whole call)."""
    s = catalog.system("gb200-nvl72")
    layout = ClusterLayout(s, 9, s.nic_gbps)
    group = CommGroup(tuple(range(ranks)), "ep")
    for comb, rate in ((False, dispatch), (True, combine)):
        op = ExpertDispatch("all_to_all", 0.0, group, nvl_bytes=1e9, sms=32, hybridep=True, combine=comb)
        assert dispatch_time(layout, profile.load(s.default_profile), op) == pytest.approx(1e9 / (rate * 1e9))


def test_hybridep_across_domains_is_deepep_on_deepeps_sms():
    """Across domains (and off NVLink 5) HybridEP is priced as DeepEP's kernels, whose
    forwarding cap is DeepEP's 20 SMs whatever SMs the HybridEP recipe gives it."""
    prof = profile.load("h100")
    s = catalog.system("dgx-h200")
    layout = ClusterLayout(s, 2, s.nic_gbps)
    kw = dict(nvl_bytes=1.125e9, chunks=1000)
    dep = ExpertDispatch("all_to_all", 100e6, CommGroup((0, 8), "ep"), sms=20, **kw)
    hyb = ExpertDispatch("all_to_all", 100e6, CommGroup((0, 8), "ep"), sms=32, hybridep=True, **kw)
    assert dispatch_time(layout, prof, hyb) == pytest.approx(dispatch_time(layout, prof, dep), rel=1e-12)


def test_normal_kernels_hold_sms_beside_overlapped_compute():
    """A block whose EP transfer (sms=20, internode) overlaps its compute: what is exposed
    is the larger of (transfer - compute) and the compute slowed by the 20 of 132 SMs the
    kernel holds while it runs. Beside the compute the transfer runs at 0.68 of its
    standalone rate (catalog deepep_overlap_rate_frac) and ends before it, so it holds
    them for transfer / 0.68: exposed transfer / 0.68 x 20 / 132."""
    s = catalog.system("dgx-h100")
    prof = profile.load("h100")
    costs = OpCosts(ComputeModel(s.gpu_spec, prof), AnalyticalNetwork(
        ClusterLayout(s, 4, s.nic_gbps), prof))
    ep = ExpertDispatch("all_to_all", 40e6, CommGroup((0, 8, 16, 24), "ep"), nvl_bytes=0.0,
                        sms=20)
    gemm = Compute("gemm", 2 * 8192 * 8192 * 8192, 3 * 2 * 8192 * 8192, "bf16", (8192, 8192, 8192))
    t_ep, t_c = costs.op_time(ep), costs.op_time(gemm)
    assert t_ep < t_c                  # fully hidden but for the SMs it takes
    parts = costs.parts(Block((gemm, ep), overlap=("ep",)))
    assert t_ep / 0.68 < t_c
    assert parts["ep"] == pytest.approx(t_ep / 0.68 * 20 / 132)
    free = costs.parts(Block((gemm, ExpertDispatch("all_to_all", 40e6, ep.group)), overlap=("ep",)))
    assert free["ep"] == 0.0


def _simulate(tmp_path, text: str):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    argv, sys.argv = sys.argv, ["clustersim", "simulate", str(p)]
    try:
        with pytest.raises(SystemExit) as exc:
            main()
    finally:
        sys.argv = argv
    return exc.value.code


@pytest.mark.parametrize("moe, key", [("{dispatch_dtype: fp4}", "dispatch_dtype"),
                                      ("{deepep_mode: fast}", "deepep_mode")])
def test_bad_dispatch_values_give_one_line(tmp_path, capsys, moe, key):
    assert _simulate(tmp_path, "cluster: {system: dgx-h100}\nworkload:\n  kind: inference\n"
                     f"  model: mixtral-8x7b\n  moe: {moe}\n"
                     "  requests: {count: 2, prompt_len: 64, output_len: 2}\n") == 2
    err = capsys.readouterr().err.strip()
    assert key in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_training_refuses_low_latency_kernels(tmp_path, capsys):
    code = _simulate(tmp_path, "cluster: {system: dgx-h100, nodes: 2}\nworkload:\n  kind: training\n"
                     "  model: qwen3-30b-a3b\n  global_batch: 16\n  parallel: {ep: 16}\n"
                     "  moe: {dispatcher: deepep, deepep_mode: low_latency}\n")
    err = capsys.readouterr().err.strip()
    assert code == 2 and "deepep_mode: low_latency applies to serving" in err
    assert len(err.splitlines()) == 1


def test_bandwidth_scale_divides_both_phases_not_the_latency():
    op = ExpertDispatch("all_to_all", 400e6, CommGroup((0, 8, 16, 24), "ep"), nvl_bytes=800e6,
                        chunks=10)
    t1 = dispatch_time(_layout(4), None, op) - 17.4e-6
    t2 = dispatch_time(_layout(4), None, op, bw_scale=2.0) - 17.4e-6
    assert t2 == pytest.approx(t1 / 2, rel=1e-9)
