"""TP communication overlap, FSDP2/HSDP details and host offload, checked by hand."""

import pytest

from workloads import memory, training
from workloads.graph import Collective, Memory, Overlap
from workloads.model import ModelSpec
from workloads.offload import OffloadOptions
from workloads.parallel import ParallelPlan

M = ModelSpec(layers=4, hidden=512, heads=8, vocab=1000, seq_len=256)


def build(opts=None, **kw):
    base = dict(tp=1, pp=1, dp=1, micro_batch=1, global_batch=kw.pop("global_batch", 1))
    p = ParallelPlan(**{**base, **kw})
    return training.build(M, p, opts or training.TrainingOptions()), p


@pytest.mark.parametrize("mode", ["ring", "async"])
def test_tp_overlap_pairs_each_sp_collective_with_its_gemm(mode):
    g, _ = build(tp=4, sequence_parallel=True, tp_comm_overlap=mode)
    fwd = next(n for n in g.nodes if n.name == "F0_c0").op.ops
    pairs = [o for o in fwd if isinstance(o, Overlap)]
    # per layer: AG->qkv, proj->RS, AG->mlp_up, mlp_down->RS; and the head's AG->logits
    assert len(pairs) == 4 * M.layers + 1
    assert {o.main[0].name for o in pairs} == {"qkv", "attn_proj", "mlp_up", "mlp_down", "logits"}
    assert all(o.steps == 3 and o.hidden[0].group.dim == "tp" for o in pairs)
    assert not any(isinstance(o, Collective) and o.kind in ("all_gather", "reduce_scatter")
                   and o.name.startswith("tp_a") for o in fwd)


def gathers(g):
    return [n for n in g.nodes if n.name.startswith("zero3_param_all_gather")]


def test_reshard_after_forward_false_gathers_only_in_forward():
    kw = dict(dp=4, zero=3, global_batch=4)
    resharded, _ = build(**kw)
    kept, _ = build(reshard_after_forward=False, **kw)
    assert len(gathers(resharded)) == 2 * M.layers and len(gathers(kept)) == M.layers


def test_prefetch_depth_sets_the_gather_start_and_the_buffers():
    g, p = build(dp=4, zero=3, global_batch=4, prefetch=2)
    computes = [n.id for n in g.nodes if n.stream == "compute" and n.name.startswith("F")]
    third = gathers(g)[3]                    # gather of layer 3: starts when layer 1 starts
    assert third.deps == (computes[0],)
    unit = M.params_per_layer
    p1 = ParallelPlan(tp=1, pp=1, dp=4, micro_batch=1, global_batch=4, zero=3)
    b1 = memory.zero3_buffers(M, p1, 0, 4)
    b2 = memory.zero3_buffers(M, p, 0, 4)
    assert b2 - b1 == pytest.approx(2 * unit)            # one more 16-bit layer gathered


def test_hsdp_shards_in_groups_and_all_reduces_across_them():
    g, p = build(dp=8, zero=3, zero_shard_group=2, global_batch=8)
    assert {n.op.group.size for n in gathers(g)} == {2}
    ar = next(n.op for n in g.nodes if n.name == "hsdp_all_reduce")
    assert ar.group.size == 4
    assert ar.bytes == pytest.approx(training.stage_params(M, p, 0) / 2 * 4)
    w, _, opt = memory.model_states(training.stage_params(M, p, 0), p.shard_group, 3, 4)
    assert p.shard_group == 2 and memory.stage_memory(M, p, 0, 4, True).optimizer == opt


def test_activation_offload_bytes_and_memory():
    per_layer = memory.activation_bytes_per_layer(M, 1, 1, False, "none", True)
    off = OffloadOptions(activations=0.5, act_bytes_per_layer=per_layer)
    g, p = build(training.TrainingOptions(offload=off), pp=2, global_batch=4)
    copies = [n.op for n in g.nodes if isinstance(n.op, Memory) and n.op.kind == "d2h"]
    reloads = [n for n in g.nodes if isinstance(n.op, Memory) and n.op.kind == "h2d"]
    assert len(copies) == 2 * 4 and copies[0].bytes == 0.5 * per_layer * 2   # 2 layers per stage
    backward = next(n for n in g.nodes if n.name == "B0_c0" and n.rank == reloads[0].rank)
    assert reloads[0].id in backward.deps
    full = memory.stage_memory(M, p, 0, 4, True)
    half = memory.stage_memory(M, p, 0, 4, True, offload=off)
    live = 2 * 2                           # stage 0 of 1F1B holds 2 microbatches x 2 layers
    assert full.activations - half.activations == pytest.approx(0.5 * (live - 1) * per_layer)


def test_optimizer_offload_moves_grads_and_params_over_the_host_link():
    off = OffloadOptions(optimizer=True, host_adam_bw=50e9)
    g, p = build(training.TrainingOptions(offload=off), dp=2, zero=1, global_batch=2)
    shard = training.stage_params(M, p, 0) / 2
    down = next(n.op for n in g.nodes if n.name == "optimizer_grads_to_host")
    cpu = next(n.op for n in g.nodes if n.name == "cpu_adam")
    assert down.bytes == shard * 4
    assert cpu.duration_s == pytest.approx(shard * training.ADAM_BYTES_PER_PARAM / 50e9)
    assert memory.stage_memory(M, p, 0, 4, True, offload=off).optimizer == 0


def test_overlap_param_gather_with_a_pipeline():
    """Each stage's gathers are issued at the start and its chunk's first forward waits per
    layer (tests/workloads/test_param_gather_overlap.py has the single-stage figures)."""
    kw = dict(dp=4, zero=1, global_batch=8, pp=2)
    over, p = build(training.TrainingOptions(overlap_param_gather=True), **kw)
    for st in range(2):
        rank = p.rank(0, 0, st)
        gathers = [n for n in over.nodes if n.rank == rank and n.name == "param_all_gather"]
        assert gathers and all(not n.deps for n in gathers)
        assert sum(n.op.bytes for n in gathers) == pytest.approx(
            training.stage_params(M, p, st) * 2)
        layers = [n for n in over.nodes if n.rank == rank and n.name.startswith("F0_c0_l")]
        assert len(layers) == M.layers // 2
