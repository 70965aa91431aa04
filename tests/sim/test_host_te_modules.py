"""Transformer Engine modules' host cost per call (hw_models/data/engines.yaml
te_module_launch, workloads/host_launch.py issue_seconds, sim/costs.py HostLaunch): the
catalog against the published figures, small graphs by hand on x86 and Grace hosts, the
fused norm and the measured recipe's casts, CUDA-graph scopes, the scenario switch."""

from __future__ import annotations

import pytest

from hw_models import catalog
from sim.costs import HostLaunch
from sim.scenario import parse
from sim.setup import host_launch
from workloads.graph import Compute
from workloads.host_launch import TeModules, host_sync, issue_seconds, te_role

US = 1e-6
GRACE = 2.75        # engines.yaml host_cpus grace: 37.08 / 13.48 us (TE issue #2053)
# TE pull request #3523, GB200, CPU time before the change (forward, forward + backward), us
PUBLISHED = {("Linear", "bf16"): (59.19, 311.30), ("Linear", "mxfp8"): (114.51, 440.93),
             ("LayerNormLinear", "bf16"): (83.48, 397.73),
             ("LayerNormLinear", "mxfp8"): (135.42, 518.67)}


def _te(system: str, precision: str = "bf16") -> TeModules:
    costs = catalog.te_module_launch_s(catalog.system(system), precision)
    return TeModules(tuple(sorted(costs.items())), "mxfp8" if precision == "mxfp8" else None)


def _k(name: str, g_us: float = 10.0, op_class: str = "gemm") -> Compute:
    return Compute(op_class, duration_s=g_us * US, name=name)


@pytest.mark.parametrize(("module", "precision"), sorted(PUBLISHED))
def test_catalog_is_the_published_gb200_table(module, precision):
    fwd, both = PUBLISHED[module, precision]
    grace = catalog.te_module_launch_s(catalog.system("gb200-nvl72"), precision)[module]
    assert grace == pytest.approx((fwd * US, (both - fwd) * US))
    # x86 hosts (DGX H100's Xeon): the Grace figure over the Grace factor
    x86 = catalog.te_module_launch_s(catalog.system("dgx-h100"), precision)[module]
    assert x86 == pytest.approx((fwd / GRACE * US, (both - fwd) / GRACE * US))


def test_two_linear_calls_by_hand_on_x86_and_grace():
    # Two TE Linear forwards (attention and MLP output projections), BF16: the host spends
    # 59.19 us per call on Grace, 59.19 / 2.75 = 21.524 us on x86.
    for g_us, x86_us, grace_us in ((10, 2 * 59.19 / GRACE - 20, 2 * 59.19 - 20),  # host-bound on both
                                   (50, 0.0, 2 * 59.19 - 100),                     # host-bound on Grace only
                                   (100, 0.0, 0.0)):                               # GPU-bound on both
        ops = (_k("attn_proj", g_us), _k("mlp_down", g_us))
        times = (g_us * US,) * 2
        x86 = HostLaunch(13.48 * US, te=_te("dgx-h100")).exposed(ops, times)
        grace = HostLaunch(13.48 * GRACE * US, te=_te("gb200-nvl72")).exposed(ops, times)
        assert x86 == pytest.approx(x86_us * US, abs=1e-12)
        assert grace == pytest.approx(grace_us * US, abs=1e-12)


def test_backward_splits_over_dgrad_and_wgrad():
    # Linear backward on Grace: 311.30 - 59.19 = 252.11 us, half on each GEMM.
    ops = (_k("mlp_down_dgrad"), _k("mlp_down_wgrad"))
    got = issue_seconds(ops, frozenset(), 37.07 * US, _te("gb200-nvl72"))
    assert got == pytest.approx([252.11 / 2 * US] * 2)
    assert HostLaunch(37.07 * US, te=_te("gb200-nvl72")).exposed(ops, (10 * US,) * 2) == pytest.approx(
        (252.11 - 20) * US)


def test_layernorm_linear_absorbs_its_norm_but_not_a_separate_one():
    te, per_op = _te("gb200-nvl72"), 37.07 * US
    norm = _k("input_norm", 5, "norm")
    # the pre-norm in front of QKV is TELayerNormColumnParallelLinear's: 83.48 us in all
    assert issue_seconds((norm, _k("qkv")), frozenset(), per_op, te) == pytest.approx([0.0, 83.48 * US])
    # in front of the router (a MoE layer's pre-MLP TENorm): its own launch
    assert issue_seconds((norm, _k("router")), frozenset(), per_op, te) == pytest.approx([per_op, per_op])
    # backward: the norm's backward after QKV's GEMMs is in the module's backward call
    bwd = (_k("qkv_dgrad"), _k("qkv_wgrad"), _k("input_norm_bwd", 5, "norm"))
    half = (397.73 - 83.48) / 2 * US
    assert issue_seconds(bwd, frozenset(), per_op, te) == pytest.approx([half, half, 0.0])


def test_measured_recipe_casts_are_in_the_call_others_are_not():
    per_op = 13.48 * US
    mx = issue_seconds((_k("attn_proj_mxfp8_cast_input", 1, "elementwise"), _k("attn_proj")),
                       frozenset(), per_op, _te("dgx-h100", "mxfp8"))
    assert mx == pytest.approx([0.0, 114.51 / GRACE * US])
    # delayed scaling has no measured row: the BF16 module figure plus the cast's launch
    dl = issue_seconds((_k("attn_proj_delayed_cast_input", 1, "elementwise"), _k("attn_proj")),
                       frozenset(), per_op, _te("dgx-h100"))
    assert dl == pytest.approx([per_op, 59.19 / GRACE * US])


def test_grouped_experts_and_plain_ops_keep_the_per_op_cost():
    assert te_role("expert_fc1") is None and te_role("logits") is None
    assert te_role("mla_q_up") == ("LayerNormLinear", "fwd") and te_role("mla_q") == ("Linear", "fwd")
    assert te_role("shared_fc1_dgrad_mxfp8_cast_grad") == ("Linear", "cast:mxfp8")
    ops = (_k("expert_fc1"), _k("expert_fc1"), _k("activation", 1, "elementwise"), host_sync())
    assert issue_seconds(ops, frozenset(), 13.48 * US, _te("dgx-h100")) == pytest.approx(
        [13.48 * US] * 3 + [0.0])


def test_cuda_graph_scope_removes_the_module_cost():
    ops = (_k("input_norm", 5, "norm"), _k("qkv"), _k("attn_proj"), _k("mlp_down"))
    host = HostLaunch(37.07 * US, frozenset({"attn"}), _te("gb200-nvl72"))
    # attention captured (norm, QKV, projection): only the MLP's Linear is issued
    assert host.issue_s(ops) == pytest.approx(59.19 * US)
    assert HostLaunch(37.07 * US, frozenset({"full_iteration"}), _te("gb200-nvl72")).issue_s(ops) == 0.0


def test_scenario_chooses_the_figures_or_none():
    def hl(system: str, **w):
        sc = parse({"cluster": {"system": system, "nodes": 1}, "workload": {"model": "gpt3-1.3b", **w}})
        return host_launch(sc, catalog.system(system))
    bf16 = hl("dgx-b200").te
    assert bf16.cost("Linear") == pytest.approx((59.19 / GRACE * US, 252.11 / GRACE * US))
    assert bf16.recipe is None
    mx = hl("gb200-nvl72", precision="fp8", fp8={"recipe": "mxfp8"}).te
    assert mx.cost("LayerNormLinear") == pytest.approx((135.42 * US, (518.67 - 135.42) * US))
    assert mx.recipe == "mxfp8"
    assert hl("dgx-b200", precision="fp8", fp8={"recipe": "delayed"}).te.recipe is None
    assert hl("dgx-b200", te_modules=False).te is None
    assert hl("dgx-b200", dtensor_tp=True).te is None
