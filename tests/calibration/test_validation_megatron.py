"""Megatron-LM SC'21 Tables 1 and 2 (PTD-P): the acceptance bar of the core issue."""

import pytest

from calibration.validate_megatron import run, summary

pytestmark = pytest.mark.slow   # runs in CI; `make test-fast` skips it


def test_sc21_validation_table():
    df = run()
    print("\n" + df.to_string(index=False))
    s = summary(df)
    print(s)
    assert s["rows"] == 16
    assert s["median_abs_error_pct"] <= 5.0        # issue 16: training median <= 5%
    assert s["rows_over_20pct"] == 0
