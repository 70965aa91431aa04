"""NeMo RL's per-token log-probability head (workloads/layers.py ``_loss_bytes``,
``logprob_loss``): the bytes of its element-wise passes over the fp32 logits, counted by
hand from nemo_rl/distributed/model_utils.py (DistributedLogprob), and the RL passes that
use it."""

import pytest

from sim import scenario
from sim.rl import simulate_rl, train_scenario
from sim.setup import resolve_setup
from workloads.graph import CommGroup
from workloads.layers import LayerContext, head_backward, head_forward
from workloads.model import resolve

MODEL = {"layers": 2, "hidden": 512, "heads": 8, "vocab": 32000, "seq_len": 1024}


def _op(ops, name):
    return next(o for o in ops if getattr(o, "name", "") == name)


@pytest.mark.parametrize("tp", [1, 4])
def test_logprob_passes_by_hand(tp):
    m = resolve(MODEL)
    T, v_local = 2 * 1024, 32000 // tp
    ctx = LayerContext(m, 2, tp, tp > 1, "bf16", CommGroup(tuple(range(tp)), "tp"),
                       logprob_loss=True)
    # forward: cast 2+4, max 4, subtract 4+4, exp 4+4, sum 4, subtract log-sum 4+4,
    # softmax for backward 4+4 = 46; backward: negate 4+4, scale 4+4, cast back 4+2 = 22
    assert _op(head_forward(ctx), "cross_entropy").bytes == 46 * T * v_local
    assert _op(head_backward(ctx), "cross_entropy_bwd").bytes == 22 * T * v_local


def test_rl_policy_and_reference_passes_use_the_logprob_head():
    sc = scenario.parse({"name": "rl", "cluster": {"system": "dgx-h100", "nodes": 1},
                         "workload": {"kind": "rl", "model": "llama3-8b", "prompts_per_step": 2,
                                      "samples_per_prompt": 2, "prompt_len": 64, "response_len": 64,
                                      "train": {"global_batch": 4, "max_seq_len": 256}}}, "rl")
    from hw_models import catalog
    from sim.rl_timeline import PoolSizes
    pools = PoolSizes(8, 8, True)
    sub = train_scenario(sc, catalog.system("dgx-h100"), pools, "llama3-8b", 256, 8)
    assert resolve_setup(sub).options.logprob_loss
    value = train_scenario(sc, catalog.system("dgx-h100"), pools, "llama3-8b", 256, 8, logprob=False)
    assert not resolve_setup(value).options.logprob_loss
    res = simulate_rl(sc)
    assert res.metrics["passes"]["policy_logprob"] > 0
