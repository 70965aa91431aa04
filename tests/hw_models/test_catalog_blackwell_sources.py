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
    """No published device query of the bus width for GB200 / B300 / GB300: they keep
    NVIDIA's 8 TB/s."""
    for key in ("gb200", "b300", "gb300"):
        assert catalog.gpu(key).hbm_tb_s == pytest.approx(8.0), key


def test_gb200_sm_count_is_152_as_its_peak_arithmetic_and_a_device_bisection_count():
    """VeOmni PR 986 counts a GB200 as 152 SMs x 8,192 BF16 FLOPs per clock x 2.062 GHz =
    2,565 TFLOP/s (a B200 as 148 x 8,192 x 1.965 GHz = 2,382); triton PR 2768 bisects
    cuBLASLt's occupancy cap on a GB300 to 9,728 output elements = sm_count x 2,048
    threads per SM / 32, the same SM count as GB200's: 9,728 x 32 / 2,048 = 152."""
    gb200, b200 = catalog.gpu("gb200"), catalog.gpu("b200")
    # 152 x 8,192 x 2.062e9 = 2,567.6e12 (the PR prints 2,565); 148 SMs would give 2,500
    assert gb200.sms * 8192 * 2.062e9 == pytest.approx(2565e12, rel=2e-3)
    assert b200.sms * 8192 * 1.965e9 == pytest.approx(2382e12, rel=5e-4)
    assert gb200.sms == 9728 * 32 // 2048 == 152
    # the peak stays NVIDIA's published figure, not the boost-clock product
    assert gb200.peak_tflops["bf16"] == pytest.approx(2450)


def test_a_trace_with_152_sms_is_recognised_as_a_gb200():
    """Replay names a trace's GPU by its SM count where the name does not settle it: with
    B200 and GB200 both at 148 neither was unique; 152 now names the GB200 and 148 the B200."""
    assert catalog._by_units("NVIDIA Graphics Device", 186.0, 152) == "gb200"
    assert catalog._by_units("NVIDIA Graphics Device", 180.0, 148) == "b200"
    assert catalog._by_units("NVIDIA Graphics Device", 288.0, 152) == "gb300"   # by memory


def test_gb300_sm_count_is_the_one_bisected_on_a_gb300():
    """triton PR 2768 on a GB300 (sm_103, cuBLASLt 13.1.1): the occupancy cap bisects to
    9,728 output elements (9,729 stops matching) = sm_count x 2,048 threads per SM / 32,
    so 152 SMs."""
    assert catalog.gpu("gb300").sms == 9728 * 32 // 2048 == 152


def test_b300_sm_count_is_the_one_its_dispatch_rule_was_measured_on():
    """bitsandbytes PR 2054 calibrates an SM103 dispatch rule on "a 148-SM B300": the SIMT
    kernel wins from the third output-tile wave up to (not including) the fourth, i.e. for
    mma_blocks in [num_sms x 3, num_sms x 4) = [444, 592). The HGX B300 enables the B200's
    148 SMs, four fewer than the GB300's 152 (as the B200 has four fewer than the GB200)."""
    b300, gb300, b200 = catalog.gpu("b300"), catalog.gpu("gb300"), catalog.gpu("b200")
    assert b300.sms == 148
    assert (b300.sms * 3, b300.sms * 4) == (444, 592)
    assert gb300.sms - b300.sms == catalog.gpu("gb200").sms - b200.sms == 4
    # the implied clock of the catalog peak: 2,250 TFLOP/s / (148 x 8,192) = 1.856 GHz,
    # under the 2.032 GHz boost NVIDIA lists for the part (2,500 / (152 x 8,192) = 2.008 GHz
    # for GB300)
    assert b300.peak_flops("bf16") / (b300.sms * 8192) / 1e9 == pytest.approx(1.8557, abs=1e-3)


def test_a_trace_with_148_sms_is_named_by_its_memory():
    """With B200 and B300 both at 148 SMs, a trace's memory settles which part it is; without
    it neither is unique and no GPU is guessed."""
    assert catalog._by_units("NVIDIA Graphics Device", 180.0, 148) == "b200"
    assert catalog._by_units("NVIDIA Graphics Device", 288.0, 148) == "b300"
    assert catalog._by_units("NVIDIA Graphics Device", None, 148) is None
