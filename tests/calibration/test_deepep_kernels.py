"""The DeepEP cost against DeepEP's own published kernel benchmarks (H800, CX7 400 Gb/s;
calibration/reference/collectives/deepep_*_kernels.csv). Nothing is fitted on them (the
internode kernels' SM rate comes from a user's H200 run, calibration/fit_deepep.py)."""

from calibration.deepep_check import kernel_rows


def test_h800_normal_kernels_within_11_percent():
    df = kernel_rows()
    rows = df[df.kernels.str.startswith("normal") & (df.gpu == "H800")]
    assert len(rows) == 8 and rows.error_pct.abs().max() <= 11.0


def test_low_latency_kernels_within_21_percent():
    df = kernel_rows()
    rows = df[df.kernels == "low-latency"]
    assert len(rows) == 12 and rows.error_pct.abs().max() <= 21.0
