"""What the gpt-oss-120b rows ran, per container (calibration/moe_recipes.py): the
attention backend Transformer Engine selects for learnable sinks with a sliding window,
the recipes' recompute modules and fused grouped MLP. The rules are TE's own
(get_attention_backend, nvte_get_fused_attn_backend); the versions are
Megatron-Bridge's software-versions table."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from calibration.moe_recipes import (
    container,
    gpt_oss_attention_backend,
    gpt_oss_fused_mlp,
    gpt_oss_recompute,
    gpt_oss_release_rows,
)
from calibration.validate_moe import SM, gpt_oss_options, gpu_of, rows


def _row(source: str, precision: str = "BF16") -> SimpleNamespace:
    return SimpleNamespace(source_id=source, precision=precision)


def test_container_versions_by_release():
    assert container((25, 11)) == ((2, 9), (9, 13, 1), "dev 0.15.0")
    assert container((26, 2, 1))[:2] == ((2, 12), (9, 18, 0))      # patch: base container
    assert container((26, 4, 1))[:2] == ((2, 14), (9, 20, 0))
    assert container((26, 8))[:2] == ((2, 16), (9, 21, 1))         # 26.08: taken as 26.06's
    assert container((25, 9)) is None


def test_every_gpt_oss_row_ran_cudnn_fused_attention():
    """cuDNN 9.13.1 (25.11) and later take learnable sinks with a causal window, so no
    row fell back to unfused attention; the 26.06+ FP8 attention rows are on Blackwell
    with cuDNN 9.21.1, where TE 2.16 allows FP8 sinks and windows."""
    df = rows()
    gpt = df[df.arch_id == "gpt-oss-120b"]
    assert len(gpt) >= 29
    for r in gpt.itertuples():
        opts = gpt_oss_options(r, "gpt-oss-120b", gpu_of(r))
        assert opts["attention"] == "flash"


@pytest.mark.parametrize("rel, sm, fp8, expected", [
    ((25, 11), 100, False, "fused"),
    ((26, 4), 90, False, "fused"),
    ((26, 6), 100, True, "fused"),     # TE 2.16 + cuDNN 9.21.1 on sm100: FP8 sink attention
    ((26, 4), 100, True, "none"),      # TE 2.14: no FP8 backend with a sink (fused and unfused off)
    ((26, 6), 90, True, "none"),       # Hopper: FP8 sink attention needs sm >= 100
    ((25, 9), 100, False, "unknown"),
])
def test_attention_backend_rules(rel, sm, fp8, expected):
    assert gpt_oss_attention_backend(rel, sm, fp8) == expected


def test_recompute_modules_and_fused_mlp_follow_the_recipes():
    # [layernorm, moe_act] on GB200 / B200 / H100 BF16 in every release; none elsewhere
    assert gpt_oss_recompute(_row("MB-PERF-25.11"), "GB200") == "norm_moe_act"
    assert gpt_oss_recompute(_row("MB-PERF-26.04.01"), "H100") == "norm_moe_act"
    assert gpt_oss_recompute(_row("MB-PERF-26.04"), "GB300") == "none"
    assert gpt_oss_recompute(_row("MB-PERF-26.06", "MXFP8"), "GB200") == "none"
    # TE's fused grouped MLP: the GB200 / GB300 MXFP8 recipes from 26.06 only
    assert gpt_oss_fused_mlp(_row("MB-PERF-26.06", "MXFP8"), "GB300")
    assert gpt_oss_fused_mlp(_row("MB-PERF-26.08", "MXFP8"), "GB200")
    assert not gpt_oss_fused_mlp(_row("MB-PERF-26.06", "MXFP8"), "B300")
    assert not gpt_oss_fused_mlp(_row("MB-PERF-26.04"), "GB200")
    assert SM["GB300"] == 103 and SM["H100"] == 90


def test_release_table_names_each_containers_stack_and_backends():
    rows = gpt_oss_release_rows([(26, 6, 1), (25, 11), (25, 11), (25, 9)])
    assert rows == [
        {"release": "25.11", "transformer_engine": "2.9", "cudnn": "9.13.1",
         "megatron_core": "dev 0.15.0", "window": "(128, 0)", "softmax": "learnable",
         "attention_16bit": "fused", "attention_fp8_sm100": "none"},
        {"release": "26.06.01", "transformer_engine": "2.16", "cudnn": "9.21.1",
         "megatron_core": "0.18.0", "window": "(127, 0)", "softmax": "learnable",
         "attention_16bit": "fused", "attention_fp8_sm100": "fused"}]
