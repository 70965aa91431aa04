"""The A100 nccl-tests logs beyond two nodes (NetX-lab/Echo, Azure ND A100 v4: 4, 8 and 16
servers of 8 A100-SXM4-40GB, one 200 Gb/s HDR NIC per GPU): parsed as recorded, validated
on azure-nd-a100-v4 with the a100 profile, and held out of every fit
(calibration/validate_nccl.py ``check_sweeps``)."""

import pytest

from calibration.build_profiles import fabric_sweeps
from calibration.validate_nccl import (
    ECHO_MULTINODE_CHECK,
    check_sweeps,
    geomean_abs_error,
    predict,
    reference_sweeps,
    validate,
)
from sim.network.analytical import bus_factor


def _sweep(n):
    (s,) = [s for s in check_sweeps() if s.name == f"echo A100-40GB {n} GPU"]
    return s


@pytest.mark.parametrize("n", ECHO_MULTINODE_CHECK)
def test_logs_parse_23_sizes_on_n_over_8_nodes(n):
    """1 KiB to 4 GiB in factors of 2 (23 sizes), in-place times; every row's busbw is
    nccl-tests' 2(n-1)/n x size / time to the log's two decimals (plus 0.5% for the time's
    rounding)."""
    s = _sweep(n)
    assert (s.system, s.profile, s.gpus, s.nodes) == ("azure-nd-a100-v4", "a100", n, n // 8)
    d = s.data
    assert len(d) == 23 and d.size_bytes.min() == 1024 and d.size_bytes.max() == 4 * 2 ** 30
    busbw = bus_factor("all_reduce", n) * d.size_bytes / (d.time_us * 1e3)
    assert ((busbw - d.busbw_gb_s).abs() <= 0.01 + 0.005 * d.busbw_gb_s).all()


@pytest.mark.parametrize(("n", "size", "time_us", "busbw"), [
    (32, 16384, 80.38, 0.39), (64, 65536, 143.0, 0.90), (128, 131072, 316.5, 0.82),
    (128, 4 * 2 ** 30, 69818, 122.07)])
def test_published_rows(n, size, time_us, busbw):
    """Rows copied from the logs' in-place columns."""
    row = _sweep(n).data.set_index("size_bytes").loc[size]
    assert (row.time_us, row.busbw_gb_s) == (time_us, busbw)


def test_held_out_of_every_fit():
    """In validate nccl's rows as checks (23 each), in no fitted sweep list."""
    rows = validate()
    for n in ECHO_MULTINODE_CHECK:
        g = rows[rows.sweep == f"echo A100-40GB {n} GPU"]
        assert len(g) == 23 and not g.fitted.any()
    fitted = {s.name for s in reference_sweeps()}
    fits = {s.name for cls in fabric_sweeps("a100").values() for s in cls}
    for n in ECHO_MULTINODE_CHECK:
        assert _sweep(n).name not in fitted | fits


@pytest.mark.parametrize("n", ECHO_MULTINODE_CHECK)
def test_bandwidth_bound_rows_out_of_sample(n):
    """512 MiB-4 GiB (ring, Simple: the NICs bound the ring) on 4-16 nodes, with the network
    curve fitted on two nodes: within 10% per row and 5% geomean."""
    r = predict(_sweep(n))
    big = r[r.size_bytes >= 2 ** 29]
    assert len(big) == 4 and (big.algo == "ring").all()
    assert big.error_pct.abs().max() <= 10
    assert geomean_abs_error(big.predicted_us, big.measured_us) <= 0.05
