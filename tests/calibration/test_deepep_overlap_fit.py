"""The catalog's ``deepep_overlap_rate_frac`` as calibration/fit_deepep.py derives it from
DeepSeek's training profile and DeepEP's published EP64 rates, checked by hand."""

from __future__ import annotations

import pytest

from calibration.fit_deepep import overlap_rate_frac
from hw_models.topology import fabric_defaults


def test_overlap_fraction_by_hand():
    """EP64 (8 nodes, top-4 of 8 node groups, 8 of 256 experts): a token reaches
    4 (1 - C(96, 8) / C(128, 8)) = 3.629 nodes, its own counted, as DeepEP's benchmark
    counts them. 4096 tokens x 3.629 x 7168 x (1 + 4/128) bytes = 109.9 MB at 51 GB/s:
    2154 us per dispatch; x 2 bytes = 213.1 MB at 50 GB/s: 4262 us per combine. The
    profile's 4 cached dispatches take 13,621 us and its 8 combines 49,448 us:
    (4 x 2154 + 8 x 4262) / 63,069 = 0.677."""
    from math import comb
    nodes = 4 * (1 - comb(96, 8) / comb(128, 8))
    assert nodes == pytest.approx(3.629, abs=1e-3)
    dispatch = 4096 * nodes * 7168 * (1 + 4 / 128) / 51e9
    combine = 4096 * nodes * 7168 * 2 / 50e9
    assert dispatch * 1e6 == pytest.approx(2154, abs=1)
    assert combine * 1e6 == pytest.approx(4262, abs=1)
    frac = (4 * dispatch + 8 * combine) / ((13621 + 49448) * 1e-6)
    got = overlap_rate_frac()
    assert got["n_points"] == 12
    assert got["dispatch_standalone_us"] == round(dispatch * 1e6)
    assert got["combine_standalone_us"] == round(combine * 1e6)
    assert got["deepep_overlap_rate_frac"] == round(frac, 2) == 0.68


def test_catalog_holds_the_derived_fraction():
    assert fabric_defaults()["deepep_overlap_rate_frac"] == overlap_rate_frac()["deepep_overlap_rate_frac"]
