"""The DeepEP cost against DeepEP's own published kernel benchmarks (H800, CX7 400 Gb/s;
calibration/reference/collectives/deepep_*_kernels.csv). Nothing is fitted on them."""

from calibration.deepep_check import kernel_rows


def test_internode_normal_kernels_at_ep32_and_ep64_within_11_percent():
    df = kernel_rows()
    rows = df[(df.kernels == "normal internode") & (df.ep >= 32)]
    assert len(rows) == 4 and rows.error_pct.abs().max() <= 11.0


def test_low_latency_kernels_within_21_percent():
    df = kernel_rows()
    rows = df[df.kernels == "low-latency"]
    assert len(rows) == 12 and rows.error_pct.abs().max() <= 21.0
