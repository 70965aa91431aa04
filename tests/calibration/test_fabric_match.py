"""Fabric sections are compared by the times their curves predict at the points of the
sweeps they were fitted on (calibration/fabric_match.py), not parameter by parameter."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from calibration.fabric_match import (
    REL,
    curve_times,
    fabric_mismatches,
    p2p_times,
    prediction_mismatches,
)
from calibration.profile_match import mismatches
from sim.network.collectives.tuner import PROTOCOLS

PROFILES = Path(__file__).resolve().parents[2] / "calibration/profiles"

# One protocol measured at a single hop count (14: an 8-GPU ring all_reduce), as DGX
# A100's nvlink.LL: NCCL latency 20 us, 1 ns per bus byte, protocol factor 0.5.
SIZES = np.array([1e3, 1e4, 1e5, 1e6])
LL = PROTOCOLS.index("LL")


def table(hops: float = 14.0) -> dict:
    n = len(SIZES)
    return {"lat0": np.full(n, 20.0), "intra": np.full(n, hops), "inter": np.zeros(n),
            "spb": np.full(n, 1e-9), "bwf": np.full(n, 0.5), "proto": np.full(n, float(LL)),
            "stream": np.zeros(n), "size": SIZES, "ramp_size": SIZES, "n": np.full(n, 8.0),
            "time": np.zeros(n)}


# The two splits of the same 25.5 us at 14 hops rebuilt on two machines (-6.48 + 14 x 2.29
# against -2.50 + 14 x 2.00, rounded so that both give 25.58 us).
RAMP = {"eff_max": 0.8, "bytes_half": 1e4, "gamma": 1.0}
A = {"base_us": -6.48, "step_us": 2.285} | RAMP
B = {"base_us": -6.48 + 14 * 0.285, "step_us": 2.0} | RAMP


def test_curve_time_by_hand():
    """20 us + (-6.48 + 14 x 2.285) us + 1e5 B x 1 ns / (0.5 x 0.8 / (1 + 1e4 / 1e5))."""
    t = curve_times(A, table())[2]
    assert t == pytest.approx((20 - 6.48 + 14 * 2.285) * 1e-6 + 1e5 * 1e-9 / (0.5 * 0.8 / 1.1))


def test_splits_with_equal_predictions_over_the_data_match():
    """Once/per-hop splits more than 1% apart match where the data only has 14 hops; at
    30 hops (no sweep) they would be 16 x 0.285 = 4.56 us apart."""
    assert prediction_mismatches({"nvlink.LL": A}, {"nvlink.LL": B}, {"nvlink.LL": table()}) == []
    far = curve_times(A, table(30.0)) - curve_times(B, table(30.0))
    assert far == pytest.approx(np.full(len(SIZES), 4.56e-6))
    assert mismatches({"fabric_like": A}, {"fabric_like": B})   # parameter by parameter: not


def test_a_two_percent_drift_at_a_measured_size_is_caught():
    """The base latency raised to add 2% at the smallest measured size is caught; 0.5% is
    within REL."""
    t0 = curve_times(B, table())[0]
    for rise, caught in ((0.02, True), (0.005, False)):
        drift = B | {"base_us": B["base_us"] + rise * t0 * 1e6}
        out = prediction_mismatches({"nvlink.LL": drift}, {"nvlink.LL": B},
                                    {"nvlink.LL": table()})
        assert bool(out) is caught, (rise, out)
    assert REL == 0.01


def test_curves_must_be_the_same():
    pts = {"nvlink.LL": table()}
    assert prediction_mismatches({}, {"nvlink.LL": B}, pts)
    assert prediction_mismatches({"nvlink.LL": RAMP}, {"nvlink.LL": B}, pts)


def test_p2p_time_by_hand():
    """NCCL latency 5 us + base 1 us + 2 MiB x 0.1 ns / 0.9 x (1 + (1e4 / 2 MiB)^0.8)."""
    p = {"base_us": 1.0, "eff_max": 0.9, "bytes_half": 1e4, "gamma": 0.8}
    x = np.array([[5.0], [1e-10], [2.0 ** 21]])
    t = p2p_times(p, x)[0]
    assert t == pytest.approx(6e-6 + 2 ** 21 * 1e-10 / 0.9 * (1 + (1e4 / 2 ** 21) ** 0.8))


def _dgx() -> dict:
    return yaml.safe_load((PROFILES / "a100-dgx.yaml").read_text())


def test_dgx_a100_rebuilt_fabric_matches_by_its_predictions():
    """The a100-dgx fabric parameters rebuilt on a 2-core AMD EPYC machine (SciPy 1.17.1,
    NumPy 2.4.6), 4% to 160% off the committed ones, predict the same times at every
    measured point of its sweeps; eff_max of Simple 2% lower (8 GiB all_reduce 2% slower)
    or of the point-to-point curve 2% lower does not match."""
    prof = _dgx()
    fab = prof["fabric"]
    rebuilt = {**fab, "nvlink.LL": fab["nvlink.LL"] | {"base_us": -6.4808, "step_us": 2.2853},
               "nvlink.p2p": fab["nvlink.p2p"] | {"bytes_half": 11780.0}}
    assert mismatches(prof | {"fabric": rebuilt}, prof) == []
    for key in ("nvlink.Simple", "nvlink.p2p"):
        slower = {**fab, key: fab[key] | {"eff_max": fab[key]["eff_max"] / 1.02}}
        out = fabric_mismatches(slower, prof)
        assert [m.split(":")[0] for m in out] == [f".fabric.{key}"], out
    assert mismatches({k: v for k, v in prof.items() if k != "fabric"}, prof)


def test_h100_ring_curve_is_judged_at_nvlink_simple_points():
    """``nvlink.ring.Simple`` (nvlink.Simple's latency and ramp on the published ring
    plateau) is compared at the NVLS Simple points of the DGX H100 sweep, where its latency
    and ramp were fitted: the committed section matches itself; its plateau 2% lower (every
    large-size point 2% slower) is caught on that curve alone."""
    prof = yaml.safe_load((PROFILES / "h100.yaml").read_text())
    fab = prof["fabric"]
    assert fabric_mismatches(fab, prof) == []
    key = "nvlink.ring.Simple"
    slower = {**fab, key: fab[key] | {"eff_max": fab[key]["eff_max"] / 1.02}}
    out = fabric_mismatches(slower, prof)
    assert [m.split(":")[0] for m in out] == [f".fabric.{key}"], out


def test_ring_on_plateau_keeps_ramp_and_latency():
    """fit_fabric.ring_on_plateau: the plateau replaced (5 significant digits), every other
    parameter, the quality and the spread kept; the fixed plateau has no spread."""
    from calibration.fit_fabric import ring_on_plateau
    from calibration.fitting import Fit
    simple = Fit({"base_us": 0.01, "step_us": 0.0, "eff_max": 0.73, "bytes_half": 6.5e5,
                  "gamma": 0.39}, {"n_points": 22},
                 {"eff_max": {"p05": 0.70, "p95": 0.79}, "gamma": {"p05": 0.29, "p95": 0.51}})
    ring = ring_on_plateau(simple, 361.9166667 / 450)
    assert ring.params == simple.params | {"eff_max": 0.80426}
    assert ring.quality == simple.quality
    assert ring.uncertainty == {"gamma": {"p05": 0.29, "p95": 0.51}}
