"""The H100 multi-node nccl-tests sweeps (Voltage Park, 4 nodes x 8 H100, NDR InfiniBand):
the committed CSVs are nccl-tests' own rows; the h100 profile's network curves are fitted on
the all_reduce, and the all_gather is held out (calibration/validate_nccl.py)."""

import pandas as pd
import pytest

from calibration.validate_nccl import (
    REF,
    VOLTAGE_PARK,
    check_sweeps,
    reference_sweeps,
    validate,
)
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


def test_all_reduce_is_fitted_all_gather_checked_on_dgx_h100():
    vp = {s.collective: s for s in reference_sweeps() + check_sweeps()
          if s.name.startswith("Voltage Park")}
    assert set(vp) == {"all_reduce", "all_gather"}
    for s in vp.values():
        assert (s.system, s.profile, s.gpus, s.gpus_per_node, s.nodes) == (
            "dgx-h100", "h100", 32, 8, 4)
    rows = validate()
    mine = rows[rows.sweep.str.startswith("Voltage Park")]
    assert set(mine.sweep) == {s.name for s in vp.values()}
    fitted = dict(mine.groupby("sweep").fitted.first())
    assert fitted == {vp["all_reduce"].name: True, vp["all_gather"].name: False}
    # 8 GiB all_gather: 25438.7 us in place, 327.12 GB/s busbw (the log's last row).
    last = mine[(mine.sweep == vp["all_gather"].name) & (mine.size_bytes == 8 * 2 ** 30)]
    assert last.measured_us.item() == pytest.approx(25438.7)


def test_h100_network_fitted_on_the_all_reduce_predicts_the_held_out_all_gather():
    """The h100 profile's network curves are fitted on the all_reduce sweep
    (calibration/build_profiles.py); the all_gather (a ring: NCCL has no tree all_gather
    across nodes) is held out. From 512 MiB up the flow model is within 5% of every row
    (measured 288.8-327.1 GB/s busbw, about 41 GB/s per NIC), and the analytical curve
    prices the 8 GiB row within 5% (measured 25438.7 us)."""
    from calibration.validate_nccl import predict
    from hw_models import catalog
    from hw_models.profile import load_builtin
    from sim.network.analytical import AnalyticalNetwork, ClusterLayout
    from workloads.graph import CommGroup

    (ag,) = [s for s in check_sweeps() if s.collective == "all_gather"]
    rows = predict(ag)
    big = rows[rows.size_bytes >= 2 ** 29]
    assert len(big) == 5 and (big.error_pct.abs() <= 5.0).all()
    sys = catalog.system("dgx-h100")
    net = AnalyticalNetwork(ClusterLayout(sys, 4, sys.nic_gbps), load_builtin("h100"))
    t = net.collective_time("all_gather", float(8 * 2 ** 30), CommGroup(tuple(range(32))))
    assert t * 1e6 == pytest.approx(25438.7, rel=0.05)


def test_h100_network_curve_keeps_the_latency_of_its_own_group():
    """The h100 network curve is fitted on 32 GPUs over 4 nodes (fit_group): on that
    group the analytical all_reduce is the curve alone; a one-GPU-per-node ring over 48
    nodes adds NCCL's latency there less NCCL's latency on the fitted group (not on the
    echo 16-GPU group the A100 curves were fitted on)."""
    from hw_models import catalog
    from hw_models.profile import load_builtin
    from sim.network.analytical import (
        AnalyticalNetwork,
        ClusterLayout,
        bus_factor,
        curve_time,
        nccl_latency_us,
    )
    from workloads.graph import CommGroup

    curve = load_builtin("h100").collectives["network"]
    assert curve.fit_group == ("all_reduce", 32, 4, 8)
    sys = catalog.system("dgx-h100")
    size = 64 * 2 ** 10
    net4 = AnalyticalNetwork(ClusterLayout(sys, 4, sys.nic_gbps), load_builtin("h100"))
    t = net4.collective_time("all_reduce", size, CommGroup(tuple(range(32))))
    assert t == pytest.approx(curve_time(curve, bus_factor("all_reduce", 32) * size,
                                         8 * net4.layout.nic_bw_per_gpu))
    net48 = AnalyticalNetwork(ClusterLayout(sys, 48, sys.nic_gbps), load_builtin("h100"))
    group = CommGroup(tuple(range(0, 48 * 8, 8)))
    t48 = net48.collective_time("reduce_scatter", size, group)
    extra = nccl_latency_us("reduce_scatter", 48, 48, 1) - nccl_latency_us("all_reduce", 32, 4, 8)
    assert t48 == pytest.approx(curve_time(curve, 47 / 48 * size, 50e9) + extra * 1e-6)
