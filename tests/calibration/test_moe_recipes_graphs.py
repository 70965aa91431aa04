"""CUDA-graph scopes and the all-to-all overlap each MoE row's Megatron-Bridge release sets
(calibration/moe_recipes.py): values as read from the recipes at tags v0.1.0-v0.6.0."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from calibration.moe_recipes import cuda_graphs, precision_key, recipe_options, router_options
from calibration.validate_moe import rows, scenario_for, skip_reason


def _row(source: str, precision: str) -> SimpleNamespace:
    return SimpleNamespace(source_id=source, precision=precision)


@pytest.mark.parametrize("source, arch, gpu, precision, expected", [
    # v0.2.0 QWEN3_30B_A3B_GB200_FP8_MX: moe_router + moe_preprocess; v0.5.0 FP8_MX_V1: full_iteration
    ("MB-PERF-25.11", "qwen3-30b-a3b", "GB200", "FP8-MX", ["moe_router", "moe_preprocess"]),
    ("MB-PERF-26.04.01", "qwen3-30b-a3b", "GB200", "MXFP8", ["moe_router", "moe_preprocess"]),
    ("MB-PERF-26.06", "qwen3-30b-a3b", "GB200", "MXFP8", ["full_iteration"]),
    # v0.4.0 QWEN3_30B_A3B_B200_FP8_MX_V1 adds attn
    ("MB-PERF-26.02", "qwen3-30b-a3b", "B200", "MXFP8", ["moe_router", "moe_preprocess"]),
    ("MB-PERF-26.04", "qwen3-30b-a3b", "B200", "MXFP8", ["attn", "moe_router", "moe_preprocess"]),
    # H100 FP8-CS configs set no graphs; Qwen3-235B on H100 none
    ("MB-PERF-26.04", "qwen3-30b-a3b", "H100", "FP8", "none"),
    ("MB-PERF-26.04", "qwen3-235b-a22b", "H100", "FP8", "none"),
    # gpt-oss-120b: GB200 BF16 eager in every release; GB300 BF16 attn + router from v0.2.0
    ("MB-PERF-26.04", "gpt-oss-120b", "GB200", "BF16", "none"),
    ("MB-PERF-25.11", "gpt-oss-120b", "GB300", "BF16", ["attn", "moe_router", "moe_preprocess"]),
    ("MB-PERF-26.08", "gpt-oss-120b", "GB200", "MXFP8", ["full_iteration"]),
    # other sources (NeMo's Grok-1 runs): taken as eager (no graph settings in the reference set)
    ("DGXC-GROK-A", "grok-1", "H100", "BF16", "none"),
])
def test_graph_scopes_follow_the_release(source, arch, gpu, precision, expected):
    assert cuda_graphs(_row(source, precision), arch, gpu) == expected


def test_full_iteration_recipes_overlap_the_all_to_alls():
    # v0.5.0 QWEN3_30B_A3B_GB200_FP8_MX_V1: cuda_graph_impl full_iteration, moe_a2a_overlap True
    assert recipe_options(_row("MB-PERF-26.06", "MXFP8"), "qwen3-30b-a3b", "GB200") == ("hybridep", True)
    assert recipe_options(_row("MB-PERF-26.04", "MXFP8"), "qwen3-30b-a3b", "GB200") == ("hybridep", False)


@pytest.mark.parametrize("source, expected", [
    # v0.3.0 QWEN3_235B_A22B_PRETRAIN_CONFIG_B300_FP8_CS_V1 (pp8 vpp4): moe_a2a_overlap=True
    ("MB-PERF-26.02", ("alltoall", True)),
    ("MB-PERF-26.02.01", ("alltoall", True)),
    # v0.4.0 (vpp 1): moe_a2a_overlap=False; v0.4.2 (26.04.01): HybridEP, still no overlap
    ("MB-PERF-26.04", ("alltoall", False)),
    ("MB-PERF-26.04.01", ("hybridep", False)),
])
def test_qwen3_235b_b300_overlap_follows_the_release(source, expected):
    assert recipe_options(_row(source, "MXFP8"), "qwen3-235b-a22b", "B300") == expected


def test_precision_labels():
    assert [precision_key(_row("x", p)) for p in ("BF16", "FP8-MX", "MXFP8", "FP8-CS", "FP8 (not labeled)")] \
        == ["BF16", "MXFP8", "MXFP8", "FP8", "FP8"]


def test_every_predicted_row_names_valid_scopes():
    from sim.scenario import parse
    for row in rows().itertuples():
        if skip_reason(row) is None:
            parse(scenario_for(row))      # refuses an unknown scope


@pytest.mark.parametrize("source, arch, expected", [
    # perf scripts: moe_router_fusion True; Qwen3's provider aux_loss 1e-3, gpt-oss's "none"
    ("MB-PERF-26.04", "qwen3-30b-a3b", {"router_fusion": True, "aux_loss": True}),
    ("MB-PERF-25.11", "qwen3-235b-a22b", {"router_fusion": True, "aux_loss": True}),
    ("MB-PERF-26.06", "gpt-oss-120b", {"router_fusion": True, "aux_loss": False}),
    # other sources keep Megatron-Core's defaults
    ("DGXC-GROK-A", "grok1-314b", {}),
])
def test_router_options_by_recipe(source, arch, expected):
    assert router_options(_row(source, "BF16"), arch) == expected
