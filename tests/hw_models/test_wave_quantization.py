"""Wave quantization term of the GEMM model against hand-counted tiles and waves."""

import numpy as np
import pytest

from hw_models import catalog
from hw_models.compute import ComputeModel, gemm_bytes, wave_factor
from hw_models.profile import load_builtin


def test_wave_factor_hand_counted():
    # 512 x 8192 output in 128x256 tiles: 4 x 32 = 128 tiles on 132 SMs, one wave at 128/132.
    assert wave_factor(512, 8192, 132, 128, 256, 1.0) == pytest.approx(132 / 128)
    # 528 rows need a 5th tile row: 160 tiles, 2 waves for 160/132 of work.
    assert wave_factor(528, 8192, 132, 128, 256, 1.0) == pytest.approx(2 * 132 / 160)
    assert wave_factor(528, 8192, 132, 128, 256, 0.5) == pytest.approx((2 * 132 / 160) ** 0.5)
    assert wave_factor(528, 8192, 132, 128, 256, 0.0) == 1.0      # term off
    assert wave_factor(528, 8192, 132, 0, 0, 1.0) == 1.0          # profile without tiles
    arr = wave_factor(np.array([512.0, 528.0]), np.array([8192.0, 8192.0]), 132, 128, 256, 1.0)
    assert arr == pytest.approx([132 / 128, 2 * 132 / 160])


def test_gemm_wave_term_only_with_shape():
    cm = ComputeModel(catalog.gpu("h100-sxm"), load_builtin("h100"))
    m, n, k = 4096, 8192, 8192
    flops, nbytes = 2.0 * m * n * k, gemm_bytes(m, n, k, 2)
    full = cm.gemm(flops, nbytes, "bf16", (m, n, k))       # 1024 tiles: 7.76 waves
    assert full >= cm.gemm(flops, nbytes, "bf16")           # quantization never speeds up
    # 4224 rows: 33 x 32 = 1056 tiles, exactly 8 waves; 4352 rows: 1088 tiles, a 9th
    # partial wave, so each row costs more.
    below, above = (cm.gemm(2.0 * r * n * k, gemm_bytes(r, n, k, 2), "bf16", (r, n, k)) / r
                    for r in (4224, 4352))
    assert above > below
