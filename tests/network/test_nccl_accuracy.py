"""Flow-model collectives vs the reference nccl-tests sweeps (calibration/validate_nccl.py):
each system's built-in profile must keep its sweeps' busbw geomean |error| <= 10%.
In-sample: the fabric sections are fitted on these sweeps; the held-out figures are in
tests/calibration/test_fabric_fit.py."""

import pytest

from calibration.validate_nccl import geomean_abs_error, predict, reference_sweeps

SWEEPS = {s.name: s for s in reference_sweeps()}


@pytest.mark.parametrize("name", list(SWEEPS))
def test_sweep_geomean_within_10_pct(name):
    rows = predict(SWEEPS[name])
    assert geomean_abs_error(rows.predicted_us, rows.measured_us) <= 0.10
