"""Every model preset's parameter count against the count its source publishes."""

import pytest

from workloads.model import presets

PUBLISHED = {n: m for n, m in presets().items() if m.published_params_b}


def test_every_preset_names_its_published_size_and_source():
    assert [n for n, m in presets().items() if not (m.published_params_b and m.source)] == []


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_matches_the_published_one(name):
    # Published sizes are rounded (1.7B, 405B): within 1%, or 0.05B for the small ones.
    m = PUBLISHED[name]
    assert abs(m.params / 1e9 - m.published_params_b) <= max(0.01 * m.published_params_b, 0.05)
