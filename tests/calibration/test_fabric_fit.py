"""Calibration acceptance for the collective model (calibration/fit_fabric.py): fitting
one nccl-tests sweep and predicting it back, and fitting every other size and
predicting the rest (held out), per reference sweep."""

import pytest

from calibration.fit_fabric import sweep_errors
from calibration.validate_nccl import reference_sweeps
from hw_models.profile import load_builtin

SWEEPS = {s.name: s for s in reference_sweeps()}
# Same-sweep error above 5% (docs/calibration.md): the H100 NVLS sweep's mid sizes, the
# 2-GPU LL/Simple knee and the 16-GPU tree/ring switch are not captured by the curves.
SAME_MISS = {"DGX H100 8 GPU NVLS", "echo A100-40GB 2 GPU", "echo A100-40GB 16 GPU"}


@pytest.fixture(scope="module")
def errors():
    out = {}
    for name, s in SWEEPS.items():
        prof = load_builtin(s.profile)
        nv = {k: v for k, v in prof.fabric.items() if k.startswith("nvlink")}
        out[name] = sweep_errors(s, prof, nv)
    return out


@pytest.mark.parametrize("name", list(SWEEPS))
def test_held_out_sizes_within_10_pct(errors, name):
    assert errors[name]["held_out"] <= 0.10


@pytest.mark.parametrize("name", [
    n if n not in SAME_MISS else pytest.param(n, marks=pytest.mark.xfail(strict=True))
    for n in SWEEPS])
def test_same_sweep_within_5_pct(errors, name):
    assert errors[name]["same"] <= 0.05
