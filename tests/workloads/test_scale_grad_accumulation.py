"""Unfused gradient accumulation (workloads/layers.py ``grad_accumulation``): each
microbatch's backward adds its weight gradients to the accumulated ones, read both and
write the sum, per parameter 2 x main-gradient bytes + the 16-bit new gradient. Sizes
by hand for a GPT layer (12 h^2 + 13 h parameters) and the embedding table."""

import pytest

from sim.scenario import parse
from sim.setup import resolve_setup
from workloads.graph import Block, CommGroup
from workloads.model import ModelSpec
from workloads.parallel import ParallelPlan
from workloads.stage_ops import build_stage_ops, local_context
from workloads.training import TrainingOptions, build

H, V = 256, 1000
MODEL = ModelSpec(layers=4, hidden=H, heads=8, vocab=V, seq_len=128)


def _accum(ops):
    return [o for o in ops if getattr(o, "name", "") == "accumulate_wgrad"]


def test_bytes_per_parameter():
    assert TrainingOptions().grad_accum_bytes == 0                        # fused: none
    fp16 = TrainingOptions(grad_bytes=2, grad_accumulation_fusion=False)
    bf16 = TrainingOptions(grad_bytes=4, grad_accumulation_fusion=False)
    assert (fp16.grad_accum_bytes, bf16.grad_accum_bytes) == (2 + 2 + 2, 4 + 2 + 4)


@pytest.mark.parametrize("pp", [1, 2])
def test_layer_embedding_and_head_by_hand(pp):
    tp = 2
    plan = ParallelPlan(tp=tp, pp=pp, dp=1, micro_batch=1, global_batch=4)
    ctx = local_context(MODEL, plan, "fp16", CommGroup((0, 1), "tp"), "flash", grad_accum_bytes=6)
    ops = build_stage_ops(ctx, plan, "none", None, (0,))
    layer = 12 * H * H + 13 * H                  # QKV, projection, MLP, biases, 2 layernorms
    assert MODEL.params_per_layer == layer
    assert [o.bytes for o in _accum(ops.bwd)] == [6 * layer / tp]
    assert [o.bytes for o in _accum(ops.bwd_weight)] == [6 * layer / tp]   # a weight-grad op
    assert [o.bytes for o in _accum(ops.emb_bwd[0].ops if isinstance(ops.emb_bwd[0], Block)
                                    else ops.emb_bwd)] == [6 * V * H / tp]
    # tied embeddings: with pp > 1 the last stage's output layer holds its own copy
    assert len(_accum(ops.head_bwd)) == (1 if pp > 1 else 0)


def test_scenario_key_charges_every_microbatch():
    sc = parse({"name": "ga", "cluster": {"system": "dgx-a100", "nodes": 1},
                "workload": {"kind": "training", "model": {"layers": 4, "hidden": H, "heads": 8,
                                                           "vocab": V, "seq_len": 128},
                             "global_batch": 12, "micro_batch": 1, "precision": "fp16",
                             "parallel": {"tp": 2, "pp": 2},
                             "grad_accumulation_fusion": False}}, "ga")
    s = resolve_setup(sc)
    g = build(s.model, s.plan, s.options)
    got = sum(o.bytes for n in g.nodes if isinstance(n.op, Block) for o in _accum(n.op.ops))
    m = s.plan.microbatches                       # 12 sequences over dp 2: 6 per pipeline
    per_mb = 4 * 6 * MODEL.params_per_layer / 2 + 2 * 6 * V * H / 2   # 4 layers, 2 tables
    assert m == 6 and got == pytest.approx(m * per_mb)
