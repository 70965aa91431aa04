"""The H100 multi-node nccl-tests sweeps (Voltage Park, 4 nodes x 8 H100, NDR InfiniBand):
the committed CSVs are nccl-tests' own rows and the nccl suite checks them on the h100
profile without fitting on them (calibration/validate_nccl.py)."""

import pandas as pd
import pytest

from calibration.validate_nccl import REF, VOLTAGE_PARK, check_sweeps, validate
from sim.network.analytical import bus_factor

URL = "https://github.com/ZiyanIshani/vpbenchmarking"


@pytest.mark.parametrize("kind,rows", [("all_reduce", 31), ("all_gather", 25)])
def test_csv_rows_are_nccl_tests_rows(kind, rows):
    """Every row's busbw is nccl-tests' definition on its own size and time: busbw =
    factor x size / time with factor 2(n-1)/n (all_reduce) or (n-1)/n (all_gather), n = 32;
    the logs print two decimals, so each row agrees to 0.01 GB/s plus 0.5% (the time's
    rounding)."""
    path = REF / VOLTAGE_PARK.format(kind)
    assert URL in path.read_text().splitlines()[1]
    df = pd.read_csv(path, comment="#")
    assert len(df) == rows and list(df.columns) == [
        "size_bytes", "time_us", "algbw_gb_s", "busbw_gb_s"]
    busbw = bus_factor(kind, 32) * df.size_bytes / (df.time_us * 1e3)
    assert ((busbw - df.busbw_gb_s).abs() <= 0.01 + 0.005 * df.busbw_gb_s).all()
    assert (df.algbw_gb_s * bus_factor(kind, 32) - df.busbw_gb_s).abs().max() <= 0.02
    assert df.size_bytes.max() == 8 * 2 ** 30


def test_sweeps_are_checked_not_fitted_on_dgx_h100():
    vp = {s.collective: s for s in check_sweeps() if s.name.startswith("Voltage Park")}
    assert set(vp) == {"all_reduce", "all_gather"}
    for s in vp.values():
        assert (s.system, s.profile, s.gpus, s.gpus_per_node, s.nodes) == (
            "dgx-h100", "h100", 32, 8, 4)
    rows = validate()
    mine = rows[rows.sweep.str.startswith("Voltage Park")]
    assert set(mine.sweep) == {s.name for s in vp.values()}
    assert not mine.fitted.any()
    # 8 GiB all_gather: 25438.7 us in place, 327.12 GB/s busbw (the log's last row).
    last = mine[(mine.sweep == vp["all_gather"].name) & (mine.size_bytes == 8 * 2 ** 30)]
    assert last.measured_us.item() == pytest.approx(25438.7)
