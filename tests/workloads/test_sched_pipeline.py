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


def play(schedule, p, m, f, i, w, layers=16):
    plan = ParallelPlan(tp=1, pp=p, dp=1, micro_batch=1, global_batch=m, schedule=schedule)
    g = training.build(model(layers), plan, training.TrainingOptions())
    return [r for r in Engine(g, PassCosts(f, i, w), FreeNetwork()).run() if r.name != "optimizer"]


def bubble(schedule, p, m, f, i, w, chunks_per_rank=1):
    """Iteration time minus one rank's work: the bubble of a synchronous step."""
    t = max(r.end for r in play(schedule, p, m, f, i, w))
    return t - chunks_per_rank * m * (f + i + w)


def idle_inside_ranks(schedule, p, m, f, i, w, layers=16):
    """Per rank, the idle time between the start of its first pass and the end of its
    last: the zero-bubble paper's measure (iterations tile when the optimizer step does
    not synchronise the stages, its post-validation)."""
    passes = [r for r in play(schedule, p, m, f, i, w, layers) if r.end > r.start]
    out = []
    for s in range(p):
        mine = [r for r in passes if r.rank == s]
        span = max(r.end for r in mine) - min(r.start for r in mine)
        out.append(span - sum(r.end - r.start for r in mine))
    return out


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


@pytest.mark.parametrize("p,m", [(4, 7), (4, 8), (4, 16), (8, 15), (8, 32)])
def test_zero_bubble_rates_inside_ranks(p, m):
    """Zero-bubble README (T_F = T_B = T_W) with the paper's measure, the idle time inside
    a rank's span: 1F1B (p-1)/m, ZB1P (p-1)/3m, ZBV 0 (m >= 2p - 1 fills the V)."""
    work = 3.0 * m
    assert max(idle_inside_ranks("1f1b", p, m, 1, 1, 1)) / work == pytest.approx((p - 1) / m)
    assert max(idle_inside_ranks("zb-h1", p, m, 1, 1, 1)) / work == pytest.approx((p - 1) / (3 * m))
    assert max(idle_inside_ranks("zb-v", p, m, 1, 1, 1, layers=4 * p)) == pytest.approx(0.0)


@pytest.mark.parametrize("p,m", [(4, 8), (8, 32)])
def test_zb_v_synchronous_step_pays_only_the_fill(p, m):
    """In one synchronous step ZB-V's only idle time is the fill of the V, (p-1) chunk
    forwards before rank p-1 starts (no V schedule can start it sooner): half of ZB1P's
    (p-1)(F+B-2W) in stage times when F = B = W."""
    chunk = bubble("zb-v", p, m, 1, 1, 1, chunks_per_rank=2)
    assert chunk == pytest.approx(p - 1)
    assert chunk / 2 == pytest.approx(bubble("zb-h1", p, m, 1, 1, 1) / 2)


def test_zb_v_is_the_papers_handcrafted_order():
    """Qi et al. Fig. 8, p = 4: rank 0 runs 7 chunk-0 forwards, then F1 I1 W1 four times,
    then the steady (F0 I0 W0 F1 I1 W1); rank 3 one F0, three (F1, F0), one F1 I1 W1."""
    from workloads.schedules_zb import zb_v
    r0, r3 = zb_v(8, 4)[0], zb_v(8, 4)[3]
    assert r0[:7] == [(k, 0, "F") for k in range(7)]
    assert r0[7:19] == [(k, 1, s) for k in range(4) for s in "FIW"]
    assert r0[19:25] == [(7, 0, "F"), (0, 0, "I"), (0, 0, "W"), (4, 1, "F"), (4, 1, "I"), (4, 1, "W")]
    assert [x[1:] for x in r3[:8]] == [(0, "F")] + [(1, "F"), (0, "F")] * 3 + [(1, "F")]
    assert r3[8:11] == [(0, 1, "I"), (0, 1, "W"), (4, 0, "F")]
    assert all(sorted(s) == sorted((k, c, x) for k in range(8) for c in (0, 1) for x in "FIW")
               for s in zb_v(8, 4))


@pytest.mark.parametrize("f,i,w", TIMES)
@pytest.mark.parametrize("p,m", [(2, 4), (4, 8), (4, 16), (8, 16)])
def test_dualpipev_bubble(p, m, f, i, w):
    """DualPipe README DualPipeV row: (PP/2-1)(F&B+B-3W) with PP = 2p stages on p devices
    (chunk times); on one compute stream F&B = F + B."""
    b = i + w
    got = bubble("dualpipev", p, m, f, i, w, chunks_per_rank=2)
    assert got == pytest.approx((2 * p // 2 - 1) * ((f + b) + b - 3 * w))


def peak_layers(schedule, p, m, layers, stage):
    plan = ParallelPlan(tp=1, pp=p, dp=1, micro_batch=1, global_batch=m, schedule=schedule)
    return plan.pipeline(layers).peak_live_layers(stage)


@pytest.mark.parametrize("p,m", [(4, 8), (8, 32)])
def test_activation_memory(p, m):
    """Activation memory in one stage's activations per microbatch: 1F1B PP, ZB1P PP,
    DualPipe PP+1 (DualPipe README); ZB-V 1x of 1F1B (zero-bubble README); DualPipeV
    PP+1 chunks with PP = 2p chunks of half a stage (DualPipe README)."""
    per_stage = 2
    layers = per_stage * p
    assert peak_layers("1f1b", p, m, layers, 0) == p * per_stage
    assert max(peak_layers("zb-h1", p, m, layers, s) for s in range(p)) == p * per_stage
    assert max(peak_layers("dualpipe", p, m, layers, s) for s in range(p)) == (p + 1) * per_stage
    assert max(peak_layers("zb-v", p, m, layers, s) for s in range(p)) == p * per_stage
    per_chunk = per_stage // 2
    assert max(peak_layers("dualpipev", p, m, layers, s) for s in range(p)) == (2 * p + 1) * per_chunk


def test_zb_v_with_few_microbatches_holds_less():
    """m < 2p - 1: the handcrafted order drops the missing microbatches, so the later
    ranks hold fewer chunks; none more than 1F1B's p stages."""
    p, m, layers = 4, 4, 8
    peaks = [peak_layers("zb-v", p, m, layers, s) for s in range(p)]
    assert max(peaks) <= p * (layers // p) and peaks[0] < peaks[-1]


def test_dualpipe_holds_two_parameter_copies():
    """DualPipe README: parameter memory 2x (rank r holds stages r and p-1-r)."""
    p, m, mdl = 4, 8, model(16)
    one = ParallelPlan(tp=1, pp=p, dp=1, micro_batch=1, global_batch=m)
    two = ParallelPlan(tp=1, pp=p, dp=1, micro_batch=1, global_batch=m, schedule="dualpipe")
    assert stage_params(mdl, two, 1) == pytest.approx(2 * stage_params(mdl, one, 1))


def test_dualpipev_parameters_per_device():
    """DualPipe README: DualPipeV holds 2x the parameters of one of its PP = 2p stages,
    which is 1x of 1F1B on the same p devices (a middle rank: no embedding, no head)."""
    p, m, mdl = 4, 8, model(16)
    v = ParallelPlan(tp=1, pp=p, dp=1, micro_batch=1, global_batch=m, schedule="dualpipev")
    same_devices = ParallelPlan(tp=1, pp=p, dp=1, micro_batch=1, global_batch=m)
    same_stages = ParallelPlan(tp=1, pp=2 * p, dp=1, micro_batch=1, global_batch=m)
    assert stage_params(mdl, v, 1) == pytest.approx(2 * stage_params(mdl, same_stages, 1))
    assert stage_params(mdl, v, 1) == pytest.approx(stage_params(mdl, same_devices, 1))


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


def test_zb_v_doubles_pipeline_communication():
    """Zero-bubble README: ZBV moves 2x 1F1B's PP communication (a microbatch crosses
    2(p-1) rank boundaries on the V, p-1 on a straight pipeline)."""
    from workloads.graph import SendRecv

    def volume(schedule):
        plan = ParallelPlan(tp=1, pp=4, dp=1, micro_batch=1, global_batch=8, schedule=schedule)
        g = training.build(model(), plan, training.TrainingOptions())
        return sum(n.op.bytes for n in g.nodes if isinstance(n.op, SendRecv))
    assert volume("zb-v") == pytest.approx(2 * volume("1f1b"))
