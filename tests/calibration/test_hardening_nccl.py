"""nccl-tests logs: impossible times are refused by line, failed-check rows are skipped."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from calibration.parsers import parse_nccl_tests
from hw_models.errors import ClusterSimError, ClusterSimWarning

HEAD = ("#  size count type redop root time algbw busbw #wrong time algbw busbw #wrong\n"
        "#  (B) (elements) (us) (GB/s) (GB/s) (us) (GB/s) (GB/s)\n")
FOOT = "# Avg bus bandwidth    : 0.1\n"


def log(*rows: str) -> str:
    return HEAD + "".join(r + "\n" for r in rows) + FOOT


@pytest.mark.parametrize("time", ["0.00", "-8.65"])
def test_zero_or_negative_time_is_refused_with_its_line(time):
    text = log("1024 256 float sum -1 10.0 0.10 0.10 0 11.0 0.09 0.09 0",
               f"2048 512 float sum -1 {time} 0.17 0.17 0 13.0 0.16 0.16 0")
    with pytest.raises(ClusterSimError, match=r"all_reduce_perf.log:4: nccl-tests time must be > 0"):
        parse_nccl_tests(text, "all_reduce_perf.log")


def test_rows_with_wrong_elements_are_skipped_with_a_warning():
    text = log("1024 256 float sum -1 10.0 0.10 0.10 0 11.0 0.09 0.09 0",
               "2048 512 float sum -1 12.0 0.17 0.17 7 13.0 0.16 0.16 0",
               "4096 1024 float sum -1 14.0 0.29 0.29 0 15.0 0.27 0.27 N/A")
    with pytest.warns(ClusterSimWarning, match=r"skipped 1 nccl-tests row\(s\) with #wrong > 0 \(lines 4\)"):
        df = parse_nccl_tests(text, "all_reduce_perf.log")
    assert list(df.size_bytes) == [1024, 4096]


def test_every_row_wrong_is_an_error():
    text = log("1024 256 float sum -1 10.0 0.10 0.10 3 11.0 0.09 0.09 0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ClusterSimError, match="every nccl-tests row has #wrong > 0"):
            parse_nccl_tests(text, "all_reduce_perf.log")


def test_old_error_column_is_not_a_count():
    """Before #wrong, nccl-tests printed the max error (a float): small values are kept."""
    ref = Path(__file__).resolve().parents[2] / \
        "calibration/reference/echo_nccl_tests/azure_a100_40gb_all_reduce_2gpu.log"
    text = ref.read_text().replace("  0e+00", "  1e-07")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(parse_nccl_tests(text, "all_reduce_perf.log")) == 28


def test_csv_row_with_extra_fields_is_one_error(tmp_path):
    """Found by benchmarks/fuzz_parsers.py: pandas' tokenizer error escaped as ParserError."""
    from calibration.parsers import read_microbench
    p = tmp_path / "m.csv"
    p.write_text("suite,op\ncollectives,all_reduce\ncollectives,all_reduce,extra\n")
    with pytest.raises(ClusterSimError, match="malformed CSV"):
        read_microbench(p)
