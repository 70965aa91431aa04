"""HybridEP's published intranode bandwidth (hw_models/hybridep.py, hw_models/data/hybridep.yaml:
DeepEP hybrid-ep docs/README_Hybrid-EP.md "Performance Results")."""

from __future__ import annotations

import pytest

from hw_models.hybridep import intranode_rate


@pytest.mark.parametrize("ranks, dispatch, combine", [
    (8, 764.03, 737.13), (16, 706.95, 666.26), (24, 665.97, 639.80),
    (32, 642.23, 605.15), (36, 632.31, 596.99)])
def test_nvl72_rate_is_the_published_row_at_32_sms(ranks, dispatch, combine):
    assert intranode_rate(900, True, ranks, 32, False) == pytest.approx(dispatch * 1e9)
    assert intranode_rate(900, True, ranks, 32, True) == pytest.approx(combine * 1e9)


def test_between_rows_linear_in_ranks_and_held_beyond_the_ends():
    # 20 ranks: halfway between 16 (706.95) and 24 (665.97)
    assert intranode_rate(900, True, 20, 32, False) == pytest.approx((706.95 + 665.97) / 2 * 1e9)
    assert intranode_rate(900, True, 4, 32, False) == pytest.approx(764.03e9)
    assert intranode_rate(900, True, 64, 32, True) == pytest.approx(596.99e9)


def test_own_gpu_rows_then_nearest_sms():
    # an 8-GPU node at 16 SMs: B200's row; at 32 SMs (only GB200 measured): GB200's 8 ranks
    assert intranode_rate(900, False, 8, 16, False) == pytest.approx(734.95e9)
    assert intranode_rate(900, False, 8, 32, True) == pytest.approx(737.13e9)
    # 20 SMs: nearest measured is 16
    assert intranode_rate(900, True, 8, 20, False) == pytest.approx(750.15e9)


def test_no_rate_off_nvlink_5():
    assert intranode_rate(450, False, 8, 32, False) is None
