"""gpt-oss-120b in `clustersim validate moe`: each row runs its release's Megatron-Bridge
recipe, and the windowed attention those rows use is checked against cuDNN's own
SDPA training benchmark (docs/moe.md, "gpt-oss-120b")."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from calibration.validate_moe import (
    attention_kernel_rows,
    recipe_options,
    release,
    rows,
    skip_reason,
)


def _row(source: str, precision: str = "BF16") -> SimpleNamespace:
    return SimpleNamespace(source_id=source, precision=precision)


@pytest.mark.parametrize("source, gpu, precision, expected", [
    # v0.2.0 / v0.3.x configs set no dispatcher backend and no a2a overlap
    ("MB-PERF-25.11", "GB200", "BF16", ("alltoall", False)),
    ("MB-PERF-26.02.01", "GB200", "BF16", ("alltoall", False)),
    # v0.4.0 V2: GB200 hybridep + moe_a2a_overlap; B200 / B300 ep8 hybridep, no overlap
    ("MB-PERF-26.04", "GB200", "BF16", ("deepep", True)),
    ("MB-PERF-26.04.01", "B200", "BF16", ("deepep", False)),
    ("MB-PERF-26.04", "GB300", "BF16", ("alltoall", False)),
    ("MB-PERF-26.04", "H100", "BF16", ("alltoall", False)),
    # v0.5.0 FP8_MX V2 and v0.6.0's full-iteration MXFP8 recipes: hybridep + overlap
    ("MB-PERF-26.06", "GB300", "MXFP8", ("deepep", True)),
    ("MB-PERF-26.08", "GB200", "MXFP8", ("deepep", True)),
    ("MB-PERF-26.06", "B300", "MXFP8", ("deepep", False)),
])
def test_gpt_oss_recipe_follows_the_release(source, gpu, precision, expected):
    assert recipe_options(_row(source, precision), "gpt-oss-120b", gpu) == expected


def test_release_parses_the_container_version():
    assert release(_row("MB-PERF-26.04.01")) == (26, 4, 1)
    assert release(_row("MB-PERF-26.06")) == (26, 6)
    assert release(_row("DGXC-GROK-A")) == ()


def test_qwen3_30b_dropless_regression_rows_are_skipped_with_the_issue():
    df = rows()
    flagged = df[df.notes.str.contains("#1998")]
    assert set(zip(flagged.source_id, flagged.gpu_type, strict=True)) == {
        ("MB-PERF-25.11", "H100"), ("MB-PERF-25.11", "B200"),
        ("MB-PERF-26.02", "H100"), ("MB-PERF-26.02", "B200")}
    assert all("#1998" in skip_reason(r) for r in flagged.itertuples())


def test_windowed_attention_kernel_against_cudnn():
    """Blackwell, 128-token window, head dim 64, 2k-16k tokens: within 25% of cuDNN's
    measured kernel (forward within 7%, backward 10-23% slow). The 32k forward (cuDNN
    slows down 3.2x from 16k to 32k) and Hopper (H200, window 1024: the profile's
    FlashAttention-2 curve, 21-63% slow against cuDNN) are the misses; the model is never
    faster than cuDNN on H200."""
    df = attention_kernel_rows()
    bw = df[df.gpu.isin(["GB200", "GB300"]) & (df.seq <= 16384)]
    assert len(bw) == 16 and (bw.error_pct.abs() < 25).all()
    h200 = df[df.gpu == "H200"]
    assert len(h200) == 10 and (h200.error_pct > 0).all()
