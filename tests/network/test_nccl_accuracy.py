"""Flow-model collectives vs the reference nccl-tests sweeps (calibration/validate_nccl.py):
the built-in profiles' global fits must keep every sweep's busbw geomean |error| <= 10%."""

import pytest

from calibration.validate_nccl import geomean_abs_error, predict, reference_sweeps

SWEEPS = {s.name: s for s in reference_sweeps()}
# Azure's NCCL 2.18.5 sweep has a 44 us small-size floor against 31 us for the echo
# logs on the same node type; one global A100 fit misses it (docs/fabric.md).
KNOWN_MISS = {"Azure A100-80GB 8 GPU"}


@pytest.mark.parametrize("name", [
    n if n not in KNOWN_MISS else pytest.param(n, marks=pytest.mark.xfail(strict=True))
    for n in SWEEPS])
def test_sweep_geomean_within_10_pct(name):
    rows = predict(SWEEPS[name])
    assert geomean_abs_error(rows.predicted_us, rows.measured_us) <= 0.10
