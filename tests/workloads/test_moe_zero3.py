"""ZeRO-3 (Megatron FSDP) with mixture-of-experts layers, by hand: each layer's replicated
part is gathered over DP and its routed experts over expert-DP, forward and again before
the backward; each backward layer reduce-scatters both; the layers keep their own kernels."""

from __future__ import annotations

import pytest

from hw_models.errors import InfeasiblePlanError
from sim.sweep import plans
from workloads import memory, training
from workloads.model import presets
from workloads.parallel import ParallelPlan, validate

MODEL = presets()["qwen3-30b-a3b"]           # 48 layers, hidden 2048, 128 experts of 768
EXPERTS_PER_RANK = 128 * 3 * 2048 * 768 / 8  # one layer's routed experts on one of ep = 8


def plan(**kw) -> ParallelPlan:
    base = {"tp": 1, "pp": 1, "dp": 16, "ep": 8, "micro_batch": 1, "global_batch": 32, "zero": 3}
    return ParallelPlan(**(base | kw))        # 16 GPUs: expert-DP 2, 2 microbatches


def _dp(g, name):
    return [n for n in g.nodes if n.rank == 0 and n.stream == "dp" and n.op.name == name]


def test_experts_gathered_and_reduced_over_expert_dp_per_layer_and_pass():
    p = plan()
    validate(p, MODEL, 16)
    g = training.build(MODEL, p, training.TrainingOptions())
    gathers = _dp(g, "zero3_expert_all_gather")
    reduces = _dp(g, "zero3_expert_grad_reduce_scatter")
    assert len(gathers) == 2 * 2 * 48           # 2 microbatches x (forward, backward) x layers
    assert len(reduces) == 2 * 48
    assert {n.op.group.size for n in gathers + reduces} == {2}
    assert [n.op.bytes for n in gathers] == pytest.approx([2 * EXPERTS_PER_RANK] * len(gathers))
    assert [n.op.bytes for n in reduces] == pytest.approx([4 * EXPERTS_PER_RANK] * len(reduces))
    dense = _dp(g, "zero3_param_all_gather")
    assert len(dense) == 2 * 2 * 48 and {n.op.group.size for n in dense} == {16}
    assert not _dp(g, "expert_grad_reduce_scatter")    # no ZeRO-1 expert buckets besides


def test_layers_keep_their_own_kernels():
    """The same forward and backward FLOPs as the ZeRO-1 step: only the collectives differ."""
    def flops(g):
        return sum(op.flops for n in g.nodes if n.rank == 0 and n.stream == "compute"
                   and n.name[0] in "FB" for op in n.op.ops if hasattr(op, "flops"))
    z3 = training.build(MODEL, plan(), training.TrainingOptions())
    z1 = training.build(MODEL, plan(zero=1), training.TrainingOptions())
    assert flops(z3) == pytest.approx(flops(z1), rel=1e-9) and flops(z3) > 0


def test_expert_weights_and_grads_sharded_over_expert_dp():
    s3 = memory.stage_memory(MODEL, plan(), 0, 4, True)
    s1 = memory.stage_memory(MODEL, plan(zero=1), 0, 4, True)
    experts = 48 * EXPERTS_PER_RANK
    dense = s1.weights / 2 - experts
    assert s3.weights == pytest.approx(2 * dense / 16 + 2 * experts / 2)
    assert s3.grads == pytest.approx(4 * dense / 16 + 4 * experts / 2)
    assert s3.optimizer == pytest.approx(s1.optimizer)
    assert s3.zero_buffers > 0


@pytest.mark.parametrize(("kw", "message"), [
    ({"zero": 2}, "zero=2 with a mixture-of-experts model is not modelled"),
    ({"zero_shard_group": 4}, "zero_shard_group=4 .HSDP. with a mixture-of-experts model"),
])
def test_refused_with_one_line(kw, message):
    with pytest.raises(InfeasiblePlanError, match=message):
        validate(plan(**kw), MODEL, 16)


@pytest.mark.parametrize("par, extra", [
    ({"tp": 1, "ep": 8}, {}),
    ({"tp": 2, "ep": 8, "sequence_parallel": True, "prefetch": 2}, {}),
    ({"tp": 1, "ep": 16, "reshard_after_forward": False}, {"recompute": "full"}),
    ({"tp": 1, "ep": 8}, {"moe": {"dispatcher": "deepep", "overlap": True},
                          "offload": {"activations": 0.5}}),
    ({"tp": 1, "ep": 8}, {"offload": {"modules": ["expert_fc1", "moe_act"]}}),
    ({"tp": 1, "ep": 8}, {"offload": {"modules": ["core_attn"], "optimizer_states": True}}),
])
def test_sweeps_play_moe_zero3_as_the_des(par, extra):
    """The sweep estimator records the graph builder's own ZeRO-3 nodes of a MoE stage (each
    layer's kernels, its dense and expert gathers and reduce-scatters, its host copies) and
    plays them as the engine does: the same iteration as ``simulate`` on 16 H100s
    (Qwen3-30B-A3B)."""
    from sim import scenario
    from sim.setup import resolve_setup
    from sim.simulate import simulate
    from sim.sweep.estimate import from_setup
    w = {"kind": "training", "model": "qwen3-30b-a3b", "seq_len": 4096, "global_batch": 32,
         "micro_batch": 1, "precision": "bf16", "recompute": "selective",
         "parallel": {"zero": 3, **par}} | extra
    sc = scenario.parse({"cluster": {"system": "dgx-h100", "nodes": 2}, "workload": w,
                         "sim": {"check_memory": False, "fidelity": "analytical"}})
    setup = resolve_setup(sc)
    plans.check_supported(setup.plan)
    estimate = from_setup(setup).iteration_time(setup.plan, setup.options.offload)
    assert estimate == pytest.approx(simulate(sc, band=False).iteration_time_s, rel=1e-9)
