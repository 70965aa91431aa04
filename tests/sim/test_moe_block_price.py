"""One price for a block of a MoE layer's ops (sim/costs.py OpCosts.tally / price): the
engine's Block node and the sweep estimator's chunk of layers (sim/sweep/estimate_moe.py)
take it from the same functions. By hand on tiny blocks, and on a MoE plan against the
graph builder's own blocks."""

from __future__ import annotations

import pytest

from hw_models import catalog
from hw_models.compute import ComputeModel
from hw_models.profile import load
from sim.costs import HostLaunch, OpCosts
from sim.sweep import estimate_moe, evaluate
from workloads.graph import Block, Collective, CommGroup, Compute, ExpertDispatch
from workloads.host_launch import host_sync
from workloads.training import build, make_stage

US = 1e-6


def _costs(host: HostLaunch | None = None) -> OpCosts:
    system = catalog.system("dgx-h100")
    return OpCosts(ComputeModel(system.gpu_spec, load(system.default_profile)), None, host=host)


def _kernel(us: float, name: str = "k") -> Compute:
    return Compute("gemm", duration_s=us * US, name=name)


def _a2a(us: float) -> Collective:
    return Collective("all_to_all", 0.0, CommGroup((0, 1), "ep"), duration_s=us * US,
                      name="ep_all_to_all_dispatch")


def _both(costs: OpCosts, ops: tuple, overlap: tuple[str, ...]) -> tuple[float, float]:
    """(the engine's Block, the estimator's run of the same ops) in seconds."""
    engine = costs.op_time(Block(ops, overlap=overlap))
    return engine, estimate_moe._time(costs, [estimate_moe._tally(costs, ops, overlap)], overlap)


def test_overlapped_all_to_all_by_hand():
    # 300 us of compute beside a 500 us all-to-all: the block takes max(300, 500) us;
    # the all-to-all 200 us exposed. Without overlap: 300 + 500 us.
    ops = (_kernel(300), _a2a(500))
    costs = _costs()
    assert _both(costs, ops, ("ep",)) == pytest.approx((500 * US, 500 * US))
    assert _both(costs, ops, ()) == pytest.approx((800 * US, 800 * US))
    assert costs.block_parts(ops, [300 * US, 500 * US], ("ep",)) == pytest.approx(
        {"compute": 300 * US, "ep": 200 * US})


def test_tp_collectives_on_the_compute_stream_cover_the_all_to_all():
    # 300 us of compute and a 100 us TP all-gather on the compute stream, a 350 us
    # all-to-all beside them: the block takes max(300 + 100, 350) = 400 us (the all-to-all
    # runs during the all-gather too). Counting only the compute as cover gave 450 us.
    tp = Collective("all_gather", 0.0, CommGroup((0, 1), "tp"), duration_s=100 * US)
    ops = (_kernel(300), tp, _a2a(350))
    costs = _costs()
    assert _both(costs, ops, ("ep",)) == pytest.approx((400 * US, 400 * US))
    assert "ep" not in {k for k, v in costs.block_parts(ops, [300 * US, 100 * US, 350 * US],
                                                         ("ep",)).items() if v > 0}


def test_host_syncs_across_layers_by_hand():
    # Two layers, each: a 200 us kernel, a sync, 4 kernels of 10 us (host 37 us per op).
    # As one block the segment after layer 1's sync holds its 4 small kernels and layer
    # 2's 200 us kernel: GPU 240 us > host 5 x 37 = 185 us, no wait. Priced layer by
    # layer, each layer's last segment waits 4 x 27 us for the host.
    layer = (_kernel(200), host_sync(), *[_kernel(10)] * 4)
    costs = _costs(HostLaunch(37 * US))
    # block: seg 1 = 200 us GPU vs 37 us host; seg 2 = 240 vs 185; seg 3 = 40 vs 148
    block = (2 * 240 + (148 - 40)) * US
    assert _both(costs, layer * 2, ()) == pytest.approx((block, block))
    # the estimator tallies each layer once and joins the tallies as the ops would be
    one = estimate_moe._tally(costs, layer, ())
    assert estimate_moe._time(costs, [one, one], ()) == pytest.approx(block)
    assert 2 * estimate_moe._time(costs, [one], ()) == pytest.approx(2 * (240 + 108) * US)


def _plan_and_estimator(tp: int, overlap: bool):
    from workloads.model import presets
    model = presets()["qwen3-30b-a3b"].model_dump(exclude_none=True) | {"layers": 4}
    base = {"cluster": {"system": "dgx-h100", "nodes": 2},
            "workload": {"kind": "training", "model": model, "seq_len": 4096, "global_batch": 32,
                         "moe": {"dispatcher": "alltoall", "overlap": overlap}},
            "sim": {"check_memory": False}}
    raw = {"tp": tp, "pp": 2, "vpp": 1, "micro_batch": 1, "recompute": "none", "zero": 1,
           "ep": 4, "etp": 1, "sequence_parallel": tp > 1, "global_batch": 32,
           "dp": 16 // (2 * tp)}
    ctx = evaluate.context(base, {})
    return evaluate._plan_of(ctx, raw), ctx.estimator


@pytest.mark.parametrize("tp, overlap", [(1, True), (2, True), (2, False)])
def test_stage_times_are_the_engines_price_of_the_graphs_blocks(tp, overlap):
    """Qwen3-30B-A3B cut to 4 layers, pp 2, ep 4, dropless (a host sync per MoE layer),
    the host's launch pace on: each stage's forward and backward in the closed form are
    exactly the engine's price of the blocks the graph builder makes for them, the last
    microbatch's backward (one block per layer) included."""
    plan, est = _plan_and_estimator(tp, overlap)
    assert est.costs.host is not None
    fwd, bwd, _, split = estimate_moe.stage_times(est, plan)
    graph = build(est.model, plan, est.options)
    last = f"B{plan.microbatches - 1}_c0_l"
    for s in range(plan.pp):
        st = make_stage(est.model, plan, est.options, s)
        assert fwd[s] == pytest.approx(sum(est.costs.op_time(b) for b in st.fwd), rel=1e-12)
        assert bwd[s] == pytest.approx(sum(est.costs.op_time(b) for b in st.bwd), rel=1e-12)
        # the last microbatch's backward, one block per layer so buckets start early
        layers = [n.op for n in graph.nodes if n.rank == st.rank and n.name.startswith(last)]
        assert len(layers) == 2
        assert split[s] == pytest.approx(sum(map(est.costs.op_time, layers)), rel=1e-12)


@pytest.mark.parametrize("overlap", [(), ("ep",)])
def test_tallies_of_any_split_join_into_the_whole_blocks_price(overlap):
    # Three layers with a sync each, an all-to-all and a DeepEP call (its SMs taken from
    # the compute, its transfer slowed beside it), cut anywhere into two runs: the joined
    # tallies price as the block of all the ops.
    deepep = ExpertDispatch("all_to_all", 1e6, CommGroup((0, 1), "ep"), duration_s=90 * US,
                            name="deepep_dispatch", sms=20)
    layer = (_kernel(200), host_sync(), _a2a(120), deepep, *[_kernel(10)] * 4)
    ops = layer * 3
    costs = _costs(HostLaunch(37 * US))
    whole = costs.op_time(Block(ops, overlap=overlap))
    for k in range(len(ops) + 1):
        a, b = (estimate_moe._tally(costs, part, overlap) for part in (ops[:k], ops[k:]))
        assert estimate_moe._time(costs, [a, b], overlap) == pytest.approx(whole, rel=1e-12)


def test_expert_tail_is_the_graphs_expert_buckets():
    """Expert gradients reduce-scattered over expert-DP in the graph's buckets (one per
    layer here: each layer's experts exceed a bucket), then their parameter all-gather:
    the closed form's tail is the sum of the same collectives' closed forms."""
    from sim.sweep.estimate_moe import expert_tail
    plan, est = _plan_and_estimator(1, True)
    graph = build(est.model, plan, est.options)
    rank = plan.rank(0, 0, 0)
    mine = [n.op for n in graph.nodes if n.rank == rank and (
        n.name.startswith("edp_bucket") or n.name == "expert_param_all_gather")]
    assert len(mine) == 2 + 1           # stage 0 holds 2 of the 4 layers
    want = sum(est.network.collective_time(op.kind, op.bytes, op.group) for op in mine)
    assert expert_tail(est, plan, 0) == pytest.approx(want, rel=1e-12)
