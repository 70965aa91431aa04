"""Blackwell catalog values that a published device query corrects, each against the
arithmetic of its source (hw_models/data/gpus.yaml cites them)."""

import pytest

from hw_models import catalog


def test_b200_hbm_bandwidth_is_the_drivers_bus_width_at_its_memory_clock():
    """pytorch/ao PR 4002: the driver reports a 7680-bit memory bus (not 8192) on a B200,
    nvidia-smi a 3996 MHz max memory clock, double data rate:
    7680 / 8 B x 3996e6 /s x 2 = 7.672e12 B/s (the 8 TB/s of the early sheets is 8192 bits)."""
    b200 = catalog.gpu("b200")
    assert b200.hbm_bw == pytest.approx(7680 / 8 * 3996e6 * 2, rel=1e-4)
    assert b200.hbm_bw == pytest.approx(7.672e12, rel=1e-4)
    assert b200.hbm_bw < 8192 / 8 * 3996e6 * 2


def test_b200_sm_count_is_the_device_query_of_the_same_source():
    """The same device query (pytorch/ao PR 4002) reports 148 SMs on a B200."""
    assert catalog.gpu("b200").sms == 148


def test_the_bandwidth_correction_stays_on_the_part_it_was_measured_on():
    """No published device query for GB200 / B300 / GB300: they keep NVIDIA's 8 TB/s."""
    for key in ("gb200", "b300", "gb300"):
        assert catalog.gpu(key).hbm_tb_s == pytest.approx(8.0), key
