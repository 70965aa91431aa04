"""Uneven and interleaved pipelines: pipeline_layers per virtual stage, and Megatron's
account_for_embedding/loss_in_pipeline_split."""

import pytest

from hw_models.errors import InfeasiblePlanError
from workloads import parallel
from workloads.model import presets
from workloads.parallel import ParallelPlan
from workloads.training import stage_params

L405 = presets()["llama3-405b"]       # 126 layers


def plan(**kw):
    base = dict(tp=8, pp=8, dp=1, micro_batch=1, global_batch=64, vpp=8, cp=2)
    return ParallelPlan(**{**base, **kw})


def test_embedding_and_loss_count_as_layers():
    """126 + 2 = 128 over 64 virtual stages: 2 each, the first and last one layer less."""
    p = plan(embedding_in_split=True, loss_in_split=True)
    parallel.validate(p, L405, 8 * 8 * 2)
    counts = p.pipeline(126).stage_layer_counts
    assert counts[0] == 1 and counts[-1] == 1 and set(counts[1:-1]) == {2}
    assert sum(counts) == 126
    assert p.stage_layers(126) == (15,) + (16,) * 6 + (15,)   # rank 0: stages 0, 8, ..., 56


def test_per_virtual_stage_list():
    layers = [1] + [2] * 62 + [1]
    p = plan(pipeline_layers=tuple(layers))
    parallel.validate(p, L405, 128)
    pipe = p.pipeline(126)
    assert pipe.chunk_layers(0, 0) == 1 and pipe.chunk_layers(7, 7) == 1   # virtual stage 63
    assert pipe.chunk_layers(3, 2) == 2


def test_per_rank_list_split_over_chunks():
    p = plan(vpp=2, pipeline_layers=(14, 16, 16, 16, 16, 16, 16, 16))
    parallel.validate(p, L405, 128)
    assert p.pipeline(126).chunk_layers(0, 1) == 7


def test_layer_parameters_follow_the_split():
    p = plan(embedding_in_split=True, loss_in_split=True)
    per_layer = L405.params_per_layer / 8
    embed = L405.vocab * L405.hidden / 8
    assert stage_params(L405, p, 3) == pytest.approx(16 * per_layer)
    assert stage_params(L405, p, 0) == pytest.approx(15 * per_layer + embed)


@pytest.mark.parametrize("kw,msg", [
    (dict(pipeline_layers=(1, 2, 3)), "must have pp=8"),
    (dict(vpp=3), "not divide the model's 126 layers"),
    (dict(vpp=2, pipeline_layers=(15, 15, 16, 16, 16, 16, 16, 16)), "multiple of vpp=2"),
    (dict(schedule="zb-v", vpp=1, pipeline_layers=(15, 15, 16, 16, 16, 16, 16, 16)),
     "multiple of the 2 chunks"),
    (dict(vpp=2, embedding_in_split=True, pipeline_layers=(16,) * 6 + (15, 15)),
     "shape the even split; with pipeline_layers"),
])
def test_bad_splits_name_the_problem(kw, msg):
    with pytest.raises(InfeasiblePlanError, match=msg):
        parallel.validate(plan(**kw), L405, 128)


def test_layer_ids_follow_the_path():
    p = plan(embedding_in_split=True, loss_in_split=True)
    pipe = p.pipeline(126)
    assert pipe.layer_ids(0, 0) == range(0, 1) and pipe.layer_ids(1, 0) == range(1, 3)
    assert pipe.layer_ids(7, 7) == range(125, 126)        # virtual stage 63
    dual = ParallelPlan(tp=1, pp=4, dp=1, micro_batch=1, global_batch=8, schedule="dualpipe")
    dp = dual.pipeline(8)
    assert dp.layer_ids(0, 1) == dp.layer_ids(3, 0) == range(6, 8)   # stage 3 on both ends


def test_moe_end_stage_with_no_layer_holds_the_embedding():
    """Qwen3-235B-A22B: 94 + 2 = 96 over pp 32 x vpp 3, one slot each: the first virtual
    stage holds the embedding alone and the last the output layer alone (a plan
    Alibaba's Pai-Megatron-Patch ran on 256 H800, issue #658), no transformer layer."""
    from workloads import moe_training
    q = presets()["qwen3-235b-a22b"]
    p = ParallelPlan(tp=1, pp=32, dp=8, ep=8, micro_batch=1, global_batch=256, vpp=3,
                     embedding_in_split=True, loss_in_split=True)
    parallel.validate(p, q, 256)
    counts = p.pipeline(94).stage_layer_counts
    assert counts[0] == 0 and counts[-1] == 0 and sum(counts) == 94
    table = q.vocab * q.hidden                     # untied: one input and one output table
    assert moe_training.unit_split(q, p, 0, 0) == [(table, 0.0)]
    assert moe_training.unit_split(q, p, 31, 2) == [(table, 0.0)]
    dense, experts = moe_training.stage_split(q, p, 5)          # three one-layer chunks
    assert experts == pytest.approx(3 * 128 * 3 * q.hidden * q.moe.expert_ffn_hidden / 8)
    assert dense > 0
