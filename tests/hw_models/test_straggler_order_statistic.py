"""The slowest of n GPUs: expected maximum of n standard normals against closed forms and
Blom's approximation, and the pace factor it gives."""

import math

import pytest
from scipy.stats import norm

from hw_models.compute import expected_max_normal, slowest_of


def test_closed_forms_for_two_and_three():
    # E[max(Z1, Z2)] = 1/sqrt(pi); E[max(Z1, Z2, Z3)] = 3 / (2 sqrt(pi)).
    assert expected_max_normal(1) == 0.0
    assert expected_max_normal(2) == pytest.approx(1 / math.sqrt(math.pi), rel=1e-9)
    assert expected_max_normal(3) == pytest.approx(1.5 / math.sqrt(math.pi), rel=1e-9)


@pytest.mark.parametrize("n", [8, 48, 384, 6144])
def test_large_n_matches_blom(n):
    # Blom (1958): E[max of n] ~ Phi^-1((n - 0.375) / (n + 0.25)), within ~1% for these n.
    assert expected_max_normal(n) == pytest.approx(norm.ppf((n - 0.375) / (n + 0.25)), rel=0.01)


def test_pace_factor():
    assert slowest_of(1, 0.02) == 1.0 and slowest_of(4096, 0.0) == 1.0
    assert slowest_of(2, 0.02) == pytest.approx(1 + 0.02 / math.sqrt(math.pi))
    assert slowest_of(6144, 0.0168) > slowest_of(48, 0.0168) > 1.0
