"""Pipeline schedules against the published bubble and memory formulas
(calibration/reference/modern/pipeline_schedules.csv: DualPipe README and zero-bubble
README rows), with free communication: F, B (full backward), I (input gradient) and W
(weight gradient) of a chunk take fixed times, everything else none."""

import pytest

from sim.engine import Engine
from tests.workloads.test_schedules import FreeNetwork
from workloads import training
from workloads.graph import Block
from workloads.model import ModelSpec
from workloads.parallel import ParallelPlan
from workloads.training import stage_params


class PassCosts:
    """A chunk's F, I and W take f, i, w seconds; a full backward i + w."""

    def __init__(self, f, i, w):
        self.t = {"F": f, "I": i, "W": w, "B": i + w}

    def duration(self, node):
        if isinstance(node.op, Block) and node.name[0] in self.t:
            return self.t[node.name[0]]
        return 0.0

    def parts(self, node):
        return {"compute": self.duration(node)}


def model(layers=16):
    return ModelSpec(layers=layers, hidden=256, heads=8, vocab=1000, seq_len=128)


def bubble(schedule, p, m, f, i, w, chunks_per_rank=1):
    plan = ParallelPlan(tp=1, pp=p, dp=1, micro_batch=1, global_batch=m, schedule=schedule)
    g = training.build(model(), plan, training.TrainingOptions())
    rows = Engine(g, PassCosts(f, i, w), FreeNetwork()).run()
    t = max(r.end for r in rows if r.name != "optimizer")
    return t - chunks_per_rank * m * (f + i + w)


TIMES = [(1.0, 1.0, 1.0), (1.0, 1.2, 0.8), (1.0, 1.1, 0.5)]


@pytest.mark.parametrize("f,i,w", TIMES)
@pytest.mark.parametrize("p,m", [(4, 8), (8, 24)])
def test_1f1b_bubble(p, m, f, i, w):
    """DualPipe README: 1F1B bubble (PP-1)(F+B)."""
    assert bubble("1f1b", p, m, f, i, w) == pytest.approx((p - 1) * (f + i + w))


@pytest.mark.parametrize("f,i,w", TIMES)
@pytest.mark.parametrize("p,m", [(4, 8), (4, 13), (8, 24)])
def test_zb_h1_bubble(p, m, f, i, w):
    """DualPipe README ZB1P row: (PP-1)(F+B-2W), B the full backward."""
    b = i + w
    assert bubble("zb-h1", p, m, f, i, w) == pytest.approx((p - 1) * (f + b - 2 * w))


@pytest.mark.parametrize("p,m", [(4, 8), (8, 32)])
def test_zero_bubble_rates_equal_passes(p, m):
    """Zero-bubble README (T_F = T_B = T_W): bubble rate (p-1)/m for 1F1B, (p-1)/3m for ZB1P."""
    work = 3.0 * m
    assert bubble("1f1b", p, m, 1, 1, 1) / work == pytest.approx((p - 1) / m)
    assert bubble("zb-h1", p, m, 1, 1, 1) / work == pytest.approx((p - 1) / (3 * m))


@pytest.mark.parametrize("f,i,w", TIMES[:2])
@pytest.mark.parametrize("p,m", [(4, 8), (4, 16), (8, 16), (8, 32)])
def test_dualpipe_bubble(p, m, f, i, w):
    """DualPipe README: (PP/2-1)(F&B+B-3W); on one compute stream F&B = F + B."""
    b = i + w
    assert bubble("dualpipe", p, m, f, i, w) == pytest.approx((p // 2 - 1) * ((f + b) + b - 3 * w))


def test_zb_v_between_zero_and_zb_h1():
    """ZB-V here is a greedy V schedule: below ZB-H1's bubble, above the handcrafted
    schedule's zero (README: bubble rate 0 when T_F = T_B = T_W)."""
    p, m = 4, 8
    zbv = bubble("zb-v", p, m, 1, 1, 1, chunks_per_rank=2) / 2     # a V chunk is half a stage
    assert 0 < zbv < bubble("zb-h1", p, m, 1, 1, 1)


def peak_layers(schedule, p, m, layers, stage):
    plan = ParallelPlan(tp=1, pp=p, dp=1, micro_batch=1, global_batch=m, schedule=schedule)
    return plan.pipeline(layers).peak_live_layers(stage)


@pytest.mark.parametrize("p,m", [(4, 8), (8, 32)])
def test_activation_memory(p, m):
    """Activation memory in one stage's activations per microbatch: 1F1B PP, ZB1P PP,
    DualPipe PP+1 (DualPipe README); ZB-V 1x of 1F1B (zero-bubble README)."""
    per_stage = 2
    layers = per_stage * p
    assert peak_layers("1f1b", p, m, layers, 0) == p * per_stage
    assert max(peak_layers("zb-h1", p, m, layers, s) for s in range(p)) == p * per_stage
    assert max(peak_layers("dualpipe", p, m, layers, s) for s in range(p)) == (p + 1) * per_stage
    assert max(peak_layers("zb-v", p, m, layers, s) for s in range(p)) == p * per_stage


def test_dualpipe_holds_two_parameter_copies():
    """DualPipe README: parameter memory 2x (rank r holds stages r and p-1-r)."""
    p, m, mdl = 4, 8, model(16)
    one = ParallelPlan(tp=1, pp=p, dp=1, micro_batch=1, global_batch=m)
    two = ParallelPlan(tp=1, pp=p, dp=1, micro_batch=1, global_batch=m, schedule="dualpipe")
    assert stage_params(mdl, two, 1) == pytest.approx(2 * stage_params(mdl, one, 1))


def test_dualpipe_pairs_are_exposed_for_overlap():
    plan = ParallelPlan(tp=1, pp=4, dp=1, micro_batch=1, global_batch=16, schedule="dualpipe")
    g = training.build(model(), plan, training.TrainingOptions())
    pairs = g.meta["overlap_pairs"]
    assert pairs
    for f, b in pairs:
        assert g.nodes[f].name.startswith("F") and g.nodes[b].name[0] in "BI"
        assert g.nodes[f].meta["mb"] != g.nodes[b].meta["mb"]


def test_dualpipe_pairs_hide_expert_all_to_alls(monkeypatch):
    """Chunks with EP all-to-alls: each F&B pair becomes one node whose all-to-alls run
    beside the pair's compute (graph.Overlap, one transfer per step)."""
    from dataclasses import replace

    from workloads import stage_ops
    from workloads.graph import Collective, CommGroup, Overlap
    a2a = Collective("all_to_all", 1e6, CommGroup((0, 1), "ep"), name="ep_dispatch")
    real = stage_ops.build_stage_ops

    def with_ep(*args, **kw):
        ops = real(*args, **kw)
        return replace(ops, fwd=ops.fwd + (a2a,), bwd=ops.bwd + (a2a, a2a))
    monkeypatch.setattr(training, "build_stage_ops", with_ep)
    plan = ParallelPlan(tp=1, pp=4, dp=1, micro_batch=1, global_batch=16, schedule="dualpipe")
    g = training.build(model(8), plan, training.TrainingOptions())
    pairs = g.meta["overlap_pairs"]
    assert pairs and all(f == b for f, b in pairs)
    block = g.nodes[pairs[0][0]].op
    (ov,) = block.ops
    per_layer = 1 + 2                      # the pair's forward and full backward of one layer
    layers = model(8).layers // 4
    assert isinstance(ov, Overlap) and len(ov.hidden) == ov.steps == per_layer * layers
    assert not any(isinstance(o, Collective) and o.group.dim == "ep" for o in ov.main)
    rows = Engine(g, PassCosts(1, 1, 1), FreeNetwork()).run()     # still plays to the end
    assert rows
