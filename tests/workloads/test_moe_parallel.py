"""Expert-parallel plans: MoE parallel folding groups, derived expert-DP, and the errors."""

from __future__ import annotations

import pytest

from hw_models.errors import InfeasiblePlanError
from workloads import moe_parallel
from workloads.model import presets
from workloads.parallel import ParallelPlan, validate


def plan(**kw) -> ParallelPlan:
    base = {"tp": 2, "pp": 1, "dp": 256, "micro_batch": 1, "global_batch": 512,
            "sequence_parallel": True, "ep": 64, "zero": 1}
    return ParallelPlan(**(base | kw))


def test_folding_as_nvidia_runs_deepseek_v3():
    """tp 2, dp 32, ep 64 on 512 GPUs per stage... here 1 stage of 512 GPUs: ep 64 > dp is
    allowed; expert-DP = 512 / 64 = 8; an EP group is 64 consecutive ranks (8 nodes of 8),
    its expert-DP peers are 64 ranks apart."""
    p = plan()
    validate(p, presets()["deepseek-v3"], 512)
    assert moe_parallel.edp(p) == 8
    assert moe_parallel.ep_group(p, 0) == tuple(range(64))
    assert moe_parallel.edp_group(p, 0) == tuple(range(0, 512, 64))
    q = plan(pp=2, dp=128, etp=2, ep=32)
    assert moe_parallel.etp_group(q, 1) == (256, 257)
    assert moe_parallel.ep_group(q, 1) == tuple(range(256, 320, 2))
    assert moe_parallel.edp(q) == 4


@pytest.mark.parametrize(("kw", "message"), [
    ({"ep": 48}, "ep=48 does not divide the model's 256 experts"),
    ({"ep": 256, "etp": 4}, r"ep\*etp = 256\*4 = 1024 does not divide the 512 ranks"),
    ({"zero": 2}, "zero=2 with a mixture-of-experts model is not modelled"),
])
def test_errors_name_the_sizes(kw, message):
    with pytest.raises(InfeasiblePlanError, match=message):
        validate(plan(**kw), presets()["deepseek-v3"], 512)


def test_etp_must_divide_the_expert_ffn():
    with pytest.raises(InfeasiblePlanError, match="etp=512 does not divide the expert FFN size 768"):
        validate(plan(ep=1, etp=512), presets()["qwen3-30b-a3b"], 512)


def test_dense_model_refuses_ep():
    with pytest.raises(InfeasiblePlanError, match="need a mixture-of-experts model"):
        validate(plan(ep=2), presets()["gpt3-175b"], 512)
