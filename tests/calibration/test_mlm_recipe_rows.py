"""Megatron-LM's own MoE recipes (moe_mlm_recipes.csv): the published figures as converted,
the scenario a recipe runs, and which rows are skipped and why."""

from __future__ import annotations

import pytest

from calibration import validate_eager_moe as eager
from calibration import validate_mlm_recipes as mlm


def _row(recipe: str):
    return next(r for r in mlm.rows().itertuples() if r.recipe == recipe)


def test_published_figure_by_hand():
    # Qwen3-30B-A3B H100 BF16: 234.1 TFLOP/s over Megatron's 23.006 GFLOP per token
    # (test_eager_moe_rows: 3 x (48 x (71.30M + 75.50M) + 2 x 2048 x 151936))
    got = eager.published(_row("qwen3_30b/h100/bf16_32GPU_TP1PP1EP8.yaml"))
    assert got == pytest.approx(234.1e12 / 23.006e9, rel=1e-4)


def test_interleaved_layout_of_the_235b_h100_recipe():
    # num_layers_per_virtual_pipeline_stage 3 with the embedding and the loss counted:
    # (94 + 2) slots / 3 per virtual stage = 32 virtual stages = pp 8 x vpp 4
    sc = mlm.scenario_for(_row("qwen3_235b/h100/bf16_256GPU_TP2PP8EP32.yaml"))
    w = sc["workload"]
    p = w["parallel"]
    assert (p["tp"], p["pp"], p["vpp"], p["ep"], p["schedule"]) == (2, 8, 4, 32, "interleaved")
    assert (94 + 2) / 3 == p["pp"] * p["vpp"]
    assert p["account_for_embedding_in_pipeline_split"] and p["sequence_parallel"]
    assert w["moe"]["dispatcher"] == "hybridep" and w["moe"]["hybridep_sms"] == 16
    assert w["moe"]["overlap"] and w["cuda_graphs"] == ["moe_router", "moe_preprocess"]
    assert w["recompute"] == "norm_moe_act" and w["precision"] == "bf16"
    assert sc["cluster"] == {"system": "dgx-h100", "nodes": 32}


def test_full_iteration_and_blockwise_recipes():
    sc = mlm.scenario_for(_row("qwen3_30b/gb200/mxfp8_16GPU_TP1PP1EP16_paged_stash.yaml"))
    w = sc["workload"]
    assert w["cuda_graphs"] == ["full_iteration"] and w["moe"]["fused_mlp"]
    assert w["fp8"] == {"recipe": "mxfp8"} and sc["cluster"]["nodes"] == 4
    assert sc["cluster"]["system"]["scale_up"]["domain_gpus"] == 64
    bw = mlm.scenario_for(_row("qwen3_30b/h100/fp8_32GPU_TP1PP1EP8.yaml"))["workload"]
    assert bw["precision"] == "fp8" and bw["fp8"] == {"recipe": "blockwise"}
    assert bw["cuda_graphs"] == ["attn", "moe_router", "moe_preprocess"]


def test_pipeline_layout_string():
    # DeepSeek-V3's "Et*4|(tttt|)*14tmL": 16 virtual stages, 4 layers each but the last,
    # which holds the 61st layer, the MTP layer and the loss
    assert mlm.stage_layers("Et*4|(tttt|)*14tmL") == [4] * 15 + [1]
    assert mlm.stage_layers("Ett|tt|ttL") == [2, 2, 2]
    sc = mlm.scenario_for(_row("deepseek_v3/b200/mxfp8_256GPU_TP1PP8EP32.yaml"))
    p = sc["workload"]["parallel"]
    assert (p["pp"], p["vpp"]) == (8, 2) and p["pipeline_layers"] == [4] * 15 + [1]
    assert sc["workload"]["recompute"] == "mla_up_proj_mlp"


def test_which_rows_are_skipped():
    for r in mlm.rows().itertuples():
        why = mlm.skip_reason(r)
        if r.recipe.startswith("deepseek_v4_pro/"):
            assert why.startswith("recipe offloads to the host (core_attn activations): "
                                  "offload.modules core_attn on DeepSeek-V4 attention")
        else:
            assert why is None, r.recipe


def test_offload_cells_become_offload_keys():
    # the DeepSeek-V3 GB200 recipe: offload_modules [expert_fc1], offload_optimizer_states
    sc = mlm.scenario_for(_row("deepseek_v3/gb200/mxfp8_256GPU_TP1PP4EP64.yaml"))
    assert sc["workload"]["offload"] == {"modules": ["expert_fc1"], "optimizer_states": True}
    assert mlm.offload_keys("expert_fc1 moe_act") == {"modules": ["expert_fc1", "moe_act"]}
    assert "offload" not in mlm.scenario_for(_row("qwen3_30b/h100/fp8_32GPU_TP1PP1EP8.yaml"))["workload"]
