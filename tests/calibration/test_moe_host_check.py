"""The per-launch host cost of Megatron-Core's eager MoE layer forward (engines.yaml
moe_layer_launch), refitted by hand from the NVTX medians of yanring/Megatron-MoE-ModelZoo
issue #7 (calibration/reference/modern/moe_host_nvtx.csv), and one MoE layer's forward
host time by hand."""

import pytest

from calibration import moe_host_check
from hw_models import catalog
from sim.costs import HostLaunch
from workloads.graph import Compute
from workloads.host_launch import MoeLaunch, host_sync, issue_seconds

US = 1e-6


def test_counts_and_fit_by_hand():
    # Router range: the fp32 router's input cast 1, its GEMM 1, the unfused scoring with
    # fp32 logits 10 and the unfused load-balancing loss 14, the dispatcher's bookkeeping
    # 7 + 4 copies and TE's permutation 4 = 41; the run also launched the forced load
    # balancing's clone and normal_ (2). Experts range (16 local experts): sort 2,
    # 16 fc1 GEMMs, activation 1, 16 fc2 GEMMs, unsort 2 = 37.
    n = moe_host_check.range_launches()
    assert n["router_and_preprocess"] == 1 + 1 + 10 + 14 + 7 + 4 + 4 == 41
    assert n["experts_compute"] == 2 + 16 + 1 + 16 + 2 == 37
    # medians 1,871,159 ns and 2,187,257 ns (the issue's table)
    router_us, experts_us = 1871.159 / 43, 2187.257 / 37
    assert router_us == pytest.approx(43.515, abs=1e-3)
    assert experts_us == pytest.approx(59.115, abs=1e-3)
    fit = moe_host_check.fit_us()
    assert fit["router_preprocess_us"] == pytest.approx(router_us, rel=1e-9)
    assert fit["experts_us"] == pytest.approx(experts_us, rel=1e-9)
    yaml = catalog.moe_layer_launch_us()
    assert yaml["router_preprocess_us"] == pytest.approx(router_us, abs=0.005)
    assert yaml["experts_us"] == pytest.approx(experts_us, abs=0.005)


def test_host_scaling():
    # x86 DGX hosts at the measured figures; Grace (GB200 trays) x2.75
    r, e = catalog.moe_layer_launch_s(catalog.system("dgx-h100"))
    assert (r, e) == pytest.approx((43.52 * US, 59.12 * US))
    r, e = catalog.moe_layer_launch_s(catalog.system("gb200-nvl72"))
    assert (r, e) == pytest.approx((2.75 * 43.52 * US, 2.75 * 59.12 * US))


def _k(name: str, host_ops: int = 1) -> Compute:
    return Compute("elementwise", duration_s=10 * US, name=name, host_ops=host_ops)


def test_one_moe_layer_forward_host_time_by_hand():
    # router GEMM 1 + scoring 24 + permutation 15 at 43.52 us = 40 x 43.52 = 1740.8 us;
    # sync; the tokens' all-to-all (2 calls) at the generic 13.48 us = 26.96 us; sort 2 +
    # 4 fc1 + activation + 4 fc2 + unsort 2 = 13 x 59.12 = 768.56 us; backward ops keep
    # 13.48 us: an fc1 dgrad 13.48 us.
    from workloads.graph import Collective, CommGroup
    a2a = Collective("all_to_all", 0.0, CommGroup((0, 1), "ep"), duration_s=50 * US,
                     name="ep_all_to_all_dispatch")
    ops = (_k("router"), _k("router_topk", 24), _k("permute", 15), host_sync(), a2a,
           _k("expert_sort", 2), *[_k("expert_fc1")] * 4, _k("expert_activation"),
           *[_k("expert_fc2")] * 4, _k("expert_unsort", 2), _k("expert_fc1_dgrad"))
    moe = MoeLaunch(43.52 * US, 59.12 * US)
    s = issue_seconds(ops, frozenset(), 13.48 * US, None, moe)
    assert sum(s[:3]) == pytest.approx(40 * 43.52 * US)
    assert s[4] == pytest.approx(2 * 13.48 * US)
    assert sum(s[5:-1]) == pytest.approx(13 * 59.12 * US)
    assert s[-1] == pytest.approx(13.48 * US)
    # captured by the router scopes: nothing issued for the router range
    assert sum(issue_seconds(ops[:3], frozenset({"moe_router", "moe_preprocess"}), 13.48 * US,
                             None, moe)) == 0.0
    # the host-bound segment after the sync: 13 launches x 59.12 us = 768.56 us of host
    # and the all-to-all calls 26.96 us against 11 kernels of 10 us and the 50 us all-to-all:
    # 768.56 + 26.96 - 160 = 635.52 us exposed
    host = HostLaunch(13.48 * US, moe=moe)
    times = [o.duration_s for o in ops]
    seg = ops[3:-1]
    assert host.exposed(seg, times[3:-1]) == pytest.approx(635.52 * US)
