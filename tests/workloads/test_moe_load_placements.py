"""Expert load of a Zipf law averaged over independent placements (one per MoE layer)."""

import numpy as np
import pytest

from workloads.moe_load import Routing, ep_load


def test_placements_average_the_single_placement_loads():
    r = Routing("zipf", 0.8, seed=3, placements=5)
    one = [ep_load(Routing("zipf", 0.8, seed=3 + i), 64, 8) for i in range(5)]
    avg = ep_load(r, 64, 8)
    assert avg.rank_factor == pytest.approx(np.mean([x.rank_factor for x in one]))
    assert avg.rank_max_mean == pytest.approx(np.mean([x.rank_max_mean for x in one]))
    # One placement is the previous behaviour.
    assert ep_load(Routing("zipf", 0.8, seed=3), 64, 8) == one[0]


def test_zipf_rank_factor_by_hand():
    # 4 experts, weights 1, 1/2, 1/3, 1/4 (sum 25/12), 2 ranks of 2. The top expert
    # shares its rank with each of the others with probability 1/3; the busiest rank
    # holds 1 + 1/2 = 3/2, 1 + 1/3 = 4/3 or 1 + 1/4 = 5/4 (the other rank has less), so
    # the expected rank factor is 2 x (3/2 + 4/3 + 5/4) / 3 / (25/12) = 1.30667.
    avg = ep_load(Routing("zipf", 1.0, placements=20000), 4, 2)
    assert avg.rank_factor == pytest.approx(2 * (1.5 + 4 / 3 + 1.25) / 3 / (25 / 12), abs=0.01)
    # The busiest expert does not depend on the placement: E / H(E, s) = 4 / (25/12).
    assert avg.expert_max_mean == pytest.approx(48 / 25)


def test_uniform_and_histogram_ignore_placements():
    assert ep_load(Routing(placements=7), 8, 4).rank_factor == pytest.approx(1.0)
    h = Routing("histogram", histogram=(3, 1, 1, 1), placements=7)
    assert ep_load(h, 4, 4).rank_factor == pytest.approx(2.0)
