"""The Megatron-Core MoE team's best-practice runs (moe_modelzoo_best_practice.csv): the
published figures as converted, the scenario a run maps to, and which rows are skipped."""

from __future__ import annotations

import pytest

from calibration import validate_eager_moe as eager
from calibration import validate_modelzoo as zoo
from workloads.model import presets


def _row(recipe: str):
    return next(r for r in zoo.rows().itertuples() if r.recipe == recipe)


def test_published_figures_by_hand():
    # H100 cross-node EP: GBS 2048 x 4096 tokens in 19.7 s on 256 GPUs
    a = _row("best_practice/qwen3/readme.md H100 cross-node EP")
    assert eager.published(a) == pytest.approx(2048 * 4096 / 19.7 / 256, abs=0.05)
    # ... which is the table's 245 TFLOP/s over Megatron's 148.0 GFLOP per token within 1%
    assert 245e12 / eager.megatron_flops_per_token(presets()["qwen3-235b-a22b"], 4096) == \
        pytest.approx(eager.published(a), rel=0.01)
    # long context, 128K: no step time; 389 TFLOP/s over Megatron's count at 131072 tokens,
    # whose core attention is 6 x 94 layers x 8192 x 131072 / token (causal half)
    lc = _row("best_practice/qwen3/readme.md H100 long context 128K")
    per_token = eager.megatron_flops_per_token(presets()["qwen3-235b-a22b"], 131072)
    assert per_token - eager.megatron_flops_per_token(presets()["qwen3-235b-a22b"], 4096) == \
        pytest.approx(6 * 94 * 8192 * (131072 - 4096))
    assert eager.published(lc) == pytest.approx(389e12 / per_token)


def test_scenarios():
    fsdp = zoo.scenario_for(_row("best_practice/qwen3/readme.md H100 intra-node EP FSDP"))
    w = fsdp["workload"]
    assert w["recompute"] == "full" and w["parallel"]["zero"] == 3 and w["micro_batch"] == 4
    a2a = zoo.scenario_for(_row("best_practice/qwen3/readme.md H100 intra-node EP A2A"))
    p = a2a["workload"]["parallel"]
    assert (p["pp"], p["vpp"], p["ep"], p["etp"]) == (32, 3, 8, 1)
    assert p["account_for_embedding_in_pipeline_split"] and p["account_for_loss_in_pipeline_split"]
    assert a2a["workload"]["moe"]["dispatcher"] == "alltoall"
    assert a2a["workload"]["recompute"] == "norm_moe_act"
    gb = zoo.scenario_for(_row("best_practice/qwen3/readme.md GB200 BF16"))
    assert gb["cluster"]["system"]["scale_up"]["domain_gpus"] == 8      # SEGMENT=2 trays
    assert gb["cluster"]["nodes"] == 64
    lc = zoo.scenario_for(_row("best_practice/qwen3/readme.md GB200 MXFP8 long context"))
    assert lc["workload"]["parallel"]["cp"] == 4 and lc["workload"]["seq_len"] == 131072


def test_which_rows_are_skipped():
    why = {r.recipe: zoo.skip_reason(r) for r in zoo.rows().itertuples()}
    assert why["best_practice/qwen3/readme.md H100 Next-80B-A3B"].startswith("no preset")
    assert why["best_practice/qwen3/readme.md GB200 MXFP8"] is None     # offload.modules
    assert sum(w is None for w in why.values()) == len(why) - 1
