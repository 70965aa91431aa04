"""A GPU's step deviates by its run-to-run jitter plus its chip's offset from the fleet, two
independent normals: the spread a job sees is their root sum of squares."""

import pytest
from pydantic import ValidationError

from hw_models.profile import Variability


def test_independent_spreads_add_in_quadrature():
    assert Variability(step_cv=0.03, gpu_cv=0.04).cv == pytest.approx(0.05)
    assert Variability(step_cv=0.02).cv == 0.02
    assert Variability(gpu_cv=0.02).cv == 0.02
    assert Variability().cv == 0.0


def test_a_spread_of_half_the_step_or_more_is_refused():
    with pytest.raises(ValidationError):
        Variability(gpu_cv=0.5)
