"""The `h100` profile's attention curve (fitted on the FlashAttention-2 paper) against cuDNN's
fused attention measured on Hopper in 2024 (calibration/reference/kernels/
attention_cudnn_hopper_2024.csv, docs/long_context.md "What the attention kernels of these
rows are"): the curve is FlashAttention-2's rate, which PyTorch's SDPA reproduces on the
same GPU, and cuDNN already ran 1.5-1.8x faster in 2024, so the curve is not the rate of the
kernel Transformer Engine runs on Hopper."""

from __future__ import annotations

from importlib import resources

import pandas as pd
import pytest

from hw_models import catalog
from hw_models.compute import attention_efficiency
from hw_models.profile import load_builtin


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    path = resources.files("calibration").joinpath("reference", "kernels",
                                                  "attention_cudnn_hopper_2024.csv")
    return pd.read_csv(path, comment="#")


def _curve_tflops(causal: bool, seq: int) -> float:
    curve = load_builtin("h100").attention["causal" if causal else "full"]
    return attention_efficiency(curve, seq) * catalog.gpu("h200").peak_flops("bf16") / 1e12


def test_h100_curve_is_flashattention2_rate_on_hopper(rows):
    """PyTorch's SDPA (FlashAttention-2 backend) on the H200 within 25% of the curve."""
    for r in rows.itertuples():
        assert r.pytorch_fwd_bwd_tflops == pytest.approx(_curve_tflops(r.causal, r.seq), rel=0.25), r


def test_cudnn_2024_ran_far_above_the_h100_curve(rows):
    for r in rows.itertuples():
        ratio = r.cudnn_fwd_bwd_tflops / _curve_tflops(r.causal, r.seq)
        assert 1.5 < ratio < 1.85, (r, ratio)
