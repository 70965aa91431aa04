"""Fused-attention efficiency against the kv length (hw_models.compute.attention_efficiency):
the saturating curve, and the decline at long sequences that cuDNN's Blackwell rows show,
held at the longest measured length."""

from __future__ import annotations

import pytest

from hw_models import catalog
from hw_models.compute import ComputeModel, attention_efficiency
from hw_models.profile import AttentionCurve, load_builtin


def test_curve_without_a_fall_is_the_saturating_form():
    """No seq_fall (the Hopper curves): eff_max s / (s + s_half) at any length,
    0.3 x 16384 / 17384 = 0.28274 and 0.3 x 1048576 / 1049576 = 0.29971."""
    c = AttentionCurve(eff_max=0.3, seq_half=1000.0)
    assert attention_efficiency(c, 16384) == pytest.approx(0.28274, abs=1e-5)
    assert attention_efficiency(c, 1048576) == pytest.approx(0.29971, abs=1e-5)


def test_fall_divides_and_is_held_beyond_the_measured_range():
    """eff_max 0.7, s_half 1000, s_fall 100000, measured to 32768 tokens:
    16K: 0.7 x 16384/17384 / (1 + 0.16384) = 0.56686;
    32K: 0.7 x 32768/33768 / (1 + 0.32768) = 0.51162, and the same at 64K and 1M."""
    c = AttentionCurve(eff_max=0.7, seq_half=1000.0, seq_fall=1e5, seq_max=32768.0)
    assert attention_efficiency(c, 16384) == pytest.approx(0.56686, abs=1e-5)
    assert attention_efficiency(c, 32768) == pytest.approx(0.51162, abs=1e-5)
    assert attention_efficiency(c, 65536) == attention_efficiency(c, 32768)
    assert attention_efficiency(c, 1 << 20) == attention_efficiency(c, 32768)


def test_compute_model_prices_the_curve():
    """Time = launch + FLOPs / (peak x eff) with the curve's efficiency (B200, 2,250
    TFLOP/s BF16, under its own profile so its catalog peak is the tensor rate): 1e12
    FLOPs at 0.51162 take 0.86868 ms plus the launch."""
    base = load_builtin("b200")
    curve = AttentionCurve(eff_max=0.7, seq_half=1000.0, seq_fall=1e5, seq_max=32768.0)
    prof = base.model_copy(update={"attention": {"causal": curve, "full": curve}})
    cm = ComputeModel(catalog.gpu("b200"), prof)
    launch = prof.memory.launch_us * 1e-6
    assert cm.attention(1e12, 65536, True, "bf16") == pytest.approx(launch + 0.86868e-3, rel=1e-4)


def test_hopper_profile_has_no_fall():
    """The h100 profile (FlashAttention-2 paper, 512-16K tokens) keeps its saturating
    curves: the default of every catalog GPU is unchanged by the decline term."""
    for curve in load_builtin("h100").attention.values():
        assert curve.seq_fall is None and curve.seq_max is None
