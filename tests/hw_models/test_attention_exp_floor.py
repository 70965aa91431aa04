"""The softmax exponential floor of fused attention: one MUFU.EX2 per score element, forward
and backward, at the part's catalog ``exp_t_s``; the kernel never runs faster than that."""

from __future__ import annotations

import pytest

from hw_models import catalog
from hw_models.compute import ComputeModel
from hw_models.profile import load_builtin

TFLOP = 1e12


def _ideal(gpu: str) -> ComputeModel:
    """The part at 100% of its tensor peak for attention, no launch cost: the floor is then
    compared with the tensor time alone."""
    base = load_builtin("h100")
    prof = base.model_copy(update={
        "attention": {k: v.model_copy(update={"eff_max": 1.0, "seq_half": 0.0})
                      for k, v in base.attention.items()},
        "memory": base.memory.model_copy(update={"launch_us": 0.0})})
    return ComputeModel(catalog.gpu(gpu), prof)


def test_h100_exp_rate_is_sixteen_per_clock_per_sm():
    """FlashAttention-3's 3.9 T exp/s on an H100 is 16 exponentials per clock on each of its
    132 SMs at the clock its BF16 peak implies (4,096 dense FLOPs per clock per SM)."""
    h100 = catalog.gpu("h100-sxm")
    clock = h100.peak_flops("bf16") / (h100.sms * 4096)
    assert h100.exp_rate == pytest.approx(16 * h100.sms * clock, rel=0.01)


def test_blackwell_ultra_doubles_the_exp_rate_at_about_the_same_tensor_peak():
    gb200, gb300 = catalog.gpu("gb200"), catalog.gpu("gb300")
    ratio = gb300.exp_rate / gb200.exp_rate
    assert ratio == pytest.approx(2 * 2500 / 2450, rel=0.01)
    assert catalog.gpu("b300").exp_rate / catalog.gpu("b200").exp_rate == pytest.approx(2.0, rel=0.01)


def test_floor_binds_on_gb200_at_head_dim_64_forward():
    """1 PFLOP of forward attention at d = 64 (256 FLOPs per score element): 3.9e12 elements.
    Tensor time at the 2,450 TFLOP/s peak 0.408 s; their exponentials at 4.8 T/s 0.814 s."""
    m = _ideal("gb200")
    t = m.attention(1e15, 8192, True, "bf16", flops_per_exp=4 * 64)
    assert t == pytest.approx(1e15 / 256 / 4.8e12, rel=1e-9)
    assert t == pytest.approx(0.8138, rel=1e-3)
    assert m.attention(1e15, 8192, True, "bf16") == pytest.approx(1e15 / (2450 * TFLOP), rel=1e-9)


def test_floor_on_gb300_at_head_dim_64_is_the_tensor_time():
    """GB300's doubled exp rate: 1e15 / 256 / 9.8e12 = 0.399 s < 1e15 / 2.5e15 = 0.400 s."""
    t = _ideal("gb300").attention(1e15, 8192, True, "bf16", flops_per_exp=4 * 64)
    assert t == pytest.approx(0.4, rel=1e-9)


def test_floor_does_not_bind_on_h100_even_at_full_tensor_rate():
    """H100 at d = 64: tensor 1e15 / 989.4e12 = 1.0107 s, exponentials 1e15 / 256 / 3.9e12
    = 1.0016 s. The exp unit never limits Hopper's attention at d >= 64."""
    t = _ideal("h100-sxm").attention(1e15, 8192, True, "bf16", flops_per_exp=4 * 64)
    assert t == pytest.approx(1e15 / (989.4 * TFLOP), rel=1e-9)


def test_gb200_head_dim_128_forward_is_at_the_balance_point_and_backward_below():
    """d = 128: 512 FLOPs per element forward, so exps need 1e15 / 512 / 4.8e12 = 0.4069 s
    against 0.4082 s of tensor time; backward has 2.5 x the FLOPs per exponential."""
    m = _ideal("gb200")
    assert m.attention(1e15, 8192, True, "bf16", 4 * 128) == pytest.approx(1 / 2.45, rel=1e-9)
    assert m.attention(1e15, 8192, True, "bf16", 10 * 128) == pytest.approx(1 / 2.45, rel=1e-9)


def test_no_floor_without_a_catalog_exp_rate_or_an_exp_count():
    a100 = _ideal("a100-80gb")
    assert a100.gpu.exp_rate is None
    assert a100.attention(1e15, 8192, True, "bf16", 64) == pytest.approx(1e15 / (312 * TFLOP))
    assert _ideal("gb200").attention(1e15, 8192, True, "bf16", 0.0) == pytest.approx(1 / 2.45)
