"""Sustained tensor-core rate at the power limit: a part's catalog ``sustained_tflops`` (the
saturated-GEMM rate once its SM clock has settled) as a share of its peak, applied relative
to the part the efficiency profile was fitted on."""

from __future__ import annotations

import pytest

from hw_models import catalog
from hw_models.compute import ComputeModel
from hw_models.profile import load_builtin

TFLOP = 1e12


def test_catalog_fields_carry_their_published_figures_and_source():
    """Maximum Sustainable Matmul FLOPS (stas00/ml-engineering): B200 BF16 1456.3 and FP8
    2795.7 TFLOP/s; H200 708.5 and 1288.7, which the H100 (same die, clocks, 700 W) takes."""
    b200, h200, h100 = (catalog.gpu(k) for k in ("b200", "h200", "h100-sxm"))
    assert b200.sustained_tflops == {"bf16": 1456.3, "fp8": 2795.7}
    assert h200.sustained_tflops == {"bf16": 708.5, "fp8": 1288.7}
    assert h100.sustained_tflops == h200.sustained_tflops
    for g in (b200, h200, h100):
        assert "Maximum Sustainable Matmul FLOPS" in g.source
        assert "ml-engineering" in g.source
    assert "1339 MHz" in b200.source and "1465 MHz" in h100.source


def test_sustained_factor_of_b200_by_hand():
    """BF16: (1456.3 / 2250) / (708.5 / 989.4) = 0.64724 / 0.71609 = 0.9039;
    FP8: (2795.7 / 4500) / (1288.7 / 1978.9) = 0.62127 / 0.65122 = 0.9540."""
    b200, h100 = catalog.gpu("b200"), catalog.gpu("h100-sxm")
    assert catalog.sustained_factor(b200, h100, "bf16") == pytest.approx(0.9039, abs=1e-4)
    assert catalog.sustained_factor(b200, h100, "fp8") == pytest.approx(0.9540, abs=1e-4)
    # fp16 runs at bf16's rate and clocks; MXFP8's block scales ride on the FP8 rate.
    assert catalog.sustained_factor(b200, h100, "fp16") == catalog.sustained_factor(b200, h100, "bf16")
    assert catalog.sustained_factor(b200, h100, "mxfp8") == catalog.sustained_factor(b200, h100, "fp8")


def test_the_share_is_the_settled_clock_over_the_clock_the_peak_implies():
    """The published saturated SM clocks (B200 1339 MHz BF16 / 1331 FP8, H200 1465 / 1374)
    over the clock each catalog peak implies (2250 TFLOP/s / (148 SMs x 8,192 FLOPs per
    clock) = 1,856 MHz; 989.4 / (132 x 4,096) = 1,830 MHz) give the same ratio as the
    measured rates to within 1%: the difference between the parts is their clock."""
    b200, h100 = catalog.gpu("b200"), catalog.gpu("h100-sxm")
    f_b200 = b200.peak_flops("bf16") / (b200.sms * 8192) / 1e6
    f_h100 = h100.peak_flops("bf16") / (h100.sms * 4096) / 1e6
    assert f_b200 == pytest.approx(1855.7, abs=0.5) and f_h100 == pytest.approx(1830.1, abs=0.5)
    for dtype, mhz_b200, mhz_h in (("bf16", 1339, 1465), ("fp8", 1331, 1374)):
        by_clock = (mhz_b200 / f_b200) / (mhz_h / f_h100)
        assert catalog.sustained_factor(b200, h100, dtype) == pytest.approx(by_clock, rel=0.01)


def test_factor_is_one_without_a_figure_or_on_the_profiles_own_part():
    h100 = catalog.gpu("h100-sxm")
    for key in ("gb200", "gb300", "b300"):       # no published saturated-GEMM rate
        assert catalog.sustained_factor(catalog.gpu(key), h100, "bf16") == 1.0
    b200 = catalog.gpu("b200")
    assert catalog.sustained_factor(b200, b200, "bf16") == 1.0
    assert catalog.sustained_factor(h100, h100, "fp8") == 1.0
    assert catalog.sustained_factor(b200, h100, "fp4") == 1.0    # not measured
    assert catalog.sustained_factor(b200, None, "bf16") == 1.0


def test_compute_model_runs_b200_at_its_sustained_rate_under_the_hopper_profile():
    """Attention at 100% efficiency, no launch: 1 PFLOP takes 1e15 / (2250e12 x 0.9039)
    = 0.4917 s on a B200 with the Hopper profile, 1e15 / 2250e12 = 0.4444 s with its own
    ``b200`` profile (fitted on the B200, so nothing relative to apply)."""
    def ideal(name: str) -> ComputeModel:
        base = load_builtin(name)
        prof = base.model_copy(update={
            "attention": {k: v.model_copy(update={"eff_max": 1.0, "seq_half": 0.0,
                                                  "seq_fall": None})
                          for k, v in base.attention.items()},
            "memory": base.memory.model_copy(update={"launch_us": 0.0})})
        return ComputeModel(catalog.gpu("b200"), prof)

    hopper, own = ideal("h100"), ideal("b200")
    assert hopper.attention(1e15, 8192, True, "bf16") == pytest.approx(0.4917, rel=1e-3)
    assert own.attention(1e15, 8192, True, "bf16") == pytest.approx(1e15 / (2250 * TFLOP))
    assert hopper.tensor_rate("fp8") == pytest.approx(4500 * TFLOP * 0.9540, rel=1e-4)


def test_compute_bound_gemm_time_scales_by_the_inverse_factor():
    """A large GEMM is compute-bound: on a B200 under the Hopper profile its kernel time is
    1 / 0.9039 that of the same part without a sustained figure (catalog peak), the
    memory term (4% of the compute time) moving it by under 0.5%."""
    b200 = catalog.gpu("b200")
    prof = load_builtin("h100")
    n = 16384
    flops, bytes_ = 2.0 * n**3, 2.0 * 3 * n * n
    launch = prof.gemm_curve("bf16").launch_us * 1e-6
    t = ComputeModel(b200, prof).gemm(flops, bytes_, "bf16", (n, n, n)) - launch
    at_peak = ComputeModel(b200.model_copy(update={"sustained_tflops": {}}), prof)
    t_peak = at_peak.gemm(flops, bytes_, "bf16", (n, n, n)) - launch
    assert t / t_peak == pytest.approx(1 / 0.9039, rel=0.005)
