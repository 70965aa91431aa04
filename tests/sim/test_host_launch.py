"""The host's launch pace in eager training (sim/costs.py HostLaunch, workloads/host_launch.py):
block times by hand, CUDA-graph scopes, and the config's error for a bad scope."""

from __future__ import annotations

import pytest

from hw_models import catalog
from hw_models.compute import ComputeModel
from hw_models.errors import ClusterSimError
from hw_models.profile import load
from sim.costs import HostLaunch, OpCosts
from sim.scenario import parse
from sim.setup import host_launch
from tests.sim.hardening_helpers import cli, one_error_line
from workloads.graph import Block, Collective, CommGroup, Compute
from workloads.host_launch import host_sync, launches

US = 1e-6


def _costs(host: HostLaunch | None) -> OpCosts:
    system = catalog.system("dgx-h100")
    return OpCosts(ComputeModel(system.gpu_spec, load(system.default_profile)), None, host=host)


def _kernels(n: int, g_us: float, name: str = "k") -> list[Compute]:
    return [Compute("elementwise", duration_s=g_us * US, name=name)] * n


def test_one_sync_by_hand():
    # 3 kernels of 10 us, a sync, 5 kernels of 10 us; the host issues one per 37 us.
    # Each segment takes max(GPU, host): 3 x 37 + 5 x 37 = 296 us for 80 us of GPU work.
    block = Block((*_kernels(3, 10), host_sync(), *_kernels(5, 10)))
    parts = _costs(HostLaunch(37 * US)).parts(block)
    assert parts["compute"] == pytest.approx(80 * US)
    assert parts["host"] == pytest.approx((3 + 5) * 27 * US)
    assert sum(parts.values()) == pytest.approx(296 * US)


def test_a_long_kernel_hides_the_host_in_its_segment_only():
    # Segment 1: one 1000 us kernel and 4 of 10 us (host 5 x 37 = 185 us < 1040 us): GPU-bound.
    # Segment 2 (after the sync): 5 kernels of 10 us: host-bound by 5 x 27 us. Without the
    # sync the whole block is GPU-bound (host 370 us < 1090 us).
    ops = (*_kernels(1, 1000), *_kernels(4, 10), host_sync(), *_kernels(5, 10))
    host = HostLaunch(37 * US)
    assert _costs(host).parts(Block(ops))["host"] == pytest.approx(135 * US)
    no_sync = tuple(o for o in ops if o.name != "host_sync")
    assert "host" not in _costs(host).parts(Block(no_sync))


def test_fast_host_or_no_host_model_adds_nothing():
    block = Block((*_kernels(3, 10), host_sync(), *_kernels(5, 10)))
    assert "host" not in _costs(HostLaunch(5 * US)).parts(block)       # h < g
    assert "host" not in _costs(None).parts(block)


def test_captured_scopes_are_not_issued_one_by_one():
    attn = Compute("gemm", duration_s=10 * US, name="qkv")
    expert = Compute("gemm", duration_s=10 * US, name="expert_fc1")
    cast = Compute("elementwise", duration_s=1 * US, name="qkv_mxfp8_cast_input")
    assert launches(attn) == launches(expert) == launches(cast) == 1
    assert launches(attn, frozenset({"attn"})) == launches(cast, frozenset({"attn"})) == 0
    assert launches(expert, frozenset({"attn"})) == 1
    assert launches(expert, frozenset({"moe"})) == 0
    block = Block((attn,) * 4 + (expert,) * 4)
    # attention captured: only the 4 expert GEMMs are issued (4 x 37 us) against 80 us of GPU
    got = _costs(HostLaunch(37 * US, frozenset({"attn"}))).parts(block)
    assert got["host"] == pytest.approx((4 * 37 - 80) * US)
    assert "host" not in _costs(HostLaunch(37 * US, frozenset({"full_iteration"}))).parts(block)


def test_overlapped_all_to_all_is_not_gpu_time_for_the_host():
    a2a = Collective("all_to_all", 0.0, CommGroup((0, 1), "ep"), duration_s=500 * US)
    ops = (*_kernels(4, 10), a2a)
    host = HostLaunch(37 * US)
    # not overlapped: the all-to-all occupies the stream, GPU 540 us > host 185 us
    assert "host" not in _costs(host).parts(Block(ops))
    # overlapped on its own stream: the compute stream has 40 us against 185 us of launches
    parts = _costs(host).parts(Block(ops, overlap=("ep",)))
    assert parts["host"] == pytest.approx(145 * US)
    # the all-to-all runs beside both the kernels and the wait: the block is max(185, 500) us
    assert parts["ep"] == pytest.approx((500 - 40 - 145) * US)
    assert sum(parts.values()) == pytest.approx(500 * US)


def test_grace_host_is_slower_by_its_sourced_factor():
    def scenario(system: str, graphs="none") -> dict:
        return {"cluster": {"system": system, "nodes": 1},
                "workload": {"model": "gpt3-1.3b", "cuda_graphs": graphs}}
    x86 = host_launch(parse(scenario("dgx-b200")), catalog.system("dgx-b200"))
    grace = host_launch(parse(scenario("gb200-nvl72")), catalog.system("gb200-nvl72"))
    assert x86.per_op_s == pytest.approx(13.48 * US)
    assert grace.per_op_s == pytest.approx(13.48 * 2.75 * US)
    both = host_launch(parse(scenario("dgx-b200", ["attn", "moe_router"])), catalog.system("dgx-b200"))
    assert both.scopes == frozenset({"attn", "moe_router"})


def test_bad_cuda_graph_scope_is_one_clear_line(monkeypatch, capsys):
    with pytest.raises(ClusterSimError, match="'attention' is not a CUDA-graph scope; allowed: none, "
                                              "attn, mlp, moe, moe_router, moe_preprocess, full_iteration"):
        parse({"workload": {"cuda_graphs": ["attn", "attention"]}})
    code, _, err = cli(monkeypatch, capsys, "simulate", "examples/gpt3_175b_a100.yaml",
                       "--set", "workload.cuda_graphs=everything")
    assert code == 2
    assert "workload.cuda_graphs" in one_error_line(err) and "'everything' is not a CUDA-graph scope" in err


def test_engine_adds_exactly_the_blocks_host_wait():
    """A tiny MoE (1024 tokens per microbatch on H100, one microbatch per rank, two MoE
    layers) is host-bound: the step with the host's launch pace is longer than without by
    the blocks' host waits, each a segment-by-segment max(GPU, host) of its own ops."""
    from sim.setup import build_engine, resolve_setup
    from sim.simulate import simulate
    from tests.sim.test_moe_sim import scenario
    from workloads import training
    from workloads.graph import Block as B
    sc = scenario()
    on = simulate(parse(sc), band=False)
    off = simulate(parse({**sc, "sim": {**sc["sim"], "host_launch": False}}), band=False)
    setup = resolve_setup(parse(sc))
    graph = training.build(setup.model, setup.plan, setup.options)
    costs = build_engine(setup, graph).costs
    rank0 = [n.op for n in graph if n.rank == 0 and isinstance(n.op, B)]
    wait = sum(costs.parts(b).get("host", 0.0) for b in rank0)
    assert wait > 0
    assert on.iteration_time_s - off.iteration_time_s == pytest.approx(wait, rel=1e-9)
    assert on.breakdown["host"] == pytest.approx(wait, rel=1e-9)


def test_unfused_fp64_router_makes_a_tiny_segment_host_bound():
    """The router's scoring op of NeMo RL's fp64 router (12 kernels, without
    moe_router_fusion; workloads/moe_launches.router_kernels) between a 10 us GEMM and a
    sync, on a Grace host (37 us per op): host 13 x 37 = 481 us against 15 us of GPU work:
    466 us exposed; with the fused router (1 kernel), 2 x 37 - 15 = 59 us."""
    from tests.workloads.test_moe_host_launches import _ctx, _topk
    from workloads.moe_layers import moe_forward
    gemm = Compute("gemm", duration_s=10 * US, name="router")
    for moe, exposed in (({"router_dtype": "fp64"}, 466), ({"router_fusion": True}, 59)):
        ops = (gemm, _topk(moe_forward(_ctx(**moe))), host_sync())
        got = HostLaunch(37 * US).exposed(ops, (10 * US, 5 * US, 0.0))
        assert got == pytest.approx(exposed * US)
