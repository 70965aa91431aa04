"""The catalog's exponential rates against published fused-attention kernels: no measured
cuDNN kernel may run faster than its exponentials allow (one per score element, forward
and backward), or the catalog rate would be too low. The measured GB300 / GB200 speed-up
of the same kernel, same cuDNN, shows the mechanism's real size at head dim 128."""

from __future__ import annotations

from importlib import resources

import pandas as pd
import pytest

from hw_models import catalog

KEYS = {"B200": "b200", "GB200": "gb200", "GB300": "gb300", "H200": "h200"}


def _csv(name: str) -> pd.DataFrame:
    path = resources.files("calibration").joinpath("reference", "kernels", name)
    return pd.read_csv(path, comment="#")


def _exp_bound_tflops(gpu: str, flops_per_exp: float) -> float:
    return catalog.gpu(KEYS[gpu]).exp_rate * flops_per_exp / 1e12


def test_no_llama_attention_kernel_beats_its_exponentials():
    """Head dim 128: a forward's FLOPs per exponential 4 x 128, a backward's 2.5 x that."""
    d = _csv("attention_cudnn_blackwell.csv")
    assert set(d.gpu) == set(KEYS)
    for r in d.itertuples():
        assert r.fwd_tflops <= _exp_bound_tflops(r.gpu, 4 * r.head_dim), r
        assert r.bwd_tflops <= _exp_bound_tflops(r.gpu, 10 * r.head_dim), r


def test_no_gpt_oss_attention_kernel_beats_its_exponentials():
    d = _csv("cudnn_sdpa_gpt_oss.csv")
    for r in d.itertuples():
        per_exp = 4 * r.head_dim * (2.5 if r.kernel == "bwd" else 1.0)
        assert r.tflops <= _exp_bound_tflops(r.gpu, per_exp), r


def test_gb200_forward_is_within_reach_of_its_exponential_floor():
    """The best GB200 forward (no mask, 8K) runs at 72% of the rate its exponentials cap it
    at (BF16 peak / 512 elements per second, x 512 FLOPs): the floor is close, not slack."""
    d = _csv("attention_cudnn_blackwell.csv")
    best = d[d.gpu == "GB200"].fwd_tflops.max()
    assert best == pytest.approx(1771.0)
    assert best / _exp_bound_tflops("GB200", 512) == pytest.approx(0.72, abs=0.01)


def test_gb300_runs_the_same_attention_kernel_faster_than_its_peak_ratio():
    """Same benchmark, same cuDNN 9.22: GB300 / GB200 forward 1.12-1.26, backward 1.06-1.22,
    against 1.02 between their BF16 peaks. The doubled exponential rate shows in the kernel."""
    d = _csv("attention_cudnn_blackwell.csv")
    g = d[d.gpu.isin(["GB200", "GB300"])].pivot_table(index=["causal", "seq"], columns="gpu",
                                                      values=["fwd_tflops", "bwd_tflops"])
    fwd = g["fwd_tflops"]["GB300"] / g["fwd_tflops"]["GB200"]
    bwd = g["bwd_tflops"]["GB300"] / g["bwd_tflops"]["GB200"]
    assert len(fwd) == 10
    assert fwd.min() == pytest.approx(1.121, abs=1e-3) and fwd.max() == pytest.approx(1.260, abs=1e-3)
    assert bwd.min() == pytest.approx(1.059, abs=1e-3) and bwd.max() == pytest.approx(1.215, abs=1e-3)
    peak = catalog.gpu("gb300").peak_flops("bf16") / catalog.gpu("gb200").peak_flops("bf16")
    assert peak == pytest.approx(1.0204, abs=1e-4) and fwd.min() > peak
