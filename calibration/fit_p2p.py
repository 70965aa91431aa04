"""Fit the point-to-point curve of a link class (profile ``fabric.<cls>.p2p``).

A send/recv is one flow and one NCCL step, so the all_reduce curves (whose base_us
carries 2(n-1) synchronised steps and whose ramp follows the whole buffer) do not carry
over: on a DGX A100 they put a 1 MiB NVLink send at 45 us where Vidur measured 17 us.
The model is the tuner's for the pair NCCL's model picks (p2p, usually Simple): NCCL
latency of one ring step + base_us + bytes x seconds per byte (the flow on the
topology) / (protocol factor x eff(S)), eff(S) = eff_max / (1 + (bytes_half / S)^gamma);
four parameters, a Huber M-estimate (calibration/fitting.py), on sizes from 1 MiB
(Vidur's kernel timing in an eager loop: below, the harness' pace is the time;
calibration/vidur_harness.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

from calibration.fitting import Fit, fit_curve, robust_least_squares
from calibration.parsers import read_vidur_network
from calibration.validate_nccl import (
    REF,
    VIDUR_MIN_BYTES,
    geomean_abs_error,
    half_octaves,
    network_for,
)
from hw_models.profile import Profile
from workloads.graph import CommGroup

NAMES = ("base_us", "eff_max", "bytes_half", "gamma")


@dataclass(frozen=True)
class P2PSweep:
    name: str
    system: str
    profile: str
    data: pd.DataFrame          # size_bytes, time_us, busbw_gb_s
    nodes: int = 1              # two GPUs of one node (validate_nccl.network_for reads it)


@cache
def p2p_sweeps() -> tuple[P2PSweep, ...]:
    """Vidur's send_recv between two GPUs of one DGX node (NVLink), from 1 MiB. Its
    two-node rows ran on a network far below the catalog's InfiniBand (8 GB/s at
    64 MiB on A100) and are not used."""
    out = []
    for gpu, system, profile in (("a100", "dgx-a100", "a100-dgx"), ("h100", "dgx-h100", "h100")):
        df = read_vidur_network(REF / f"vidur/network/{gpu}_dgx_send_recv.csv")
        df = df[(df.gpus == 2) & (df.gpus_per_node == 2) & (df.size_bytes >= VIDUR_MIN_BYTES)]
        df = df.iloc[half_octaves(df.size_bytes.to_numpy())]
        data = df[["size_bytes", "time_us"]].reset_index(drop=True)
        data["busbw_gb_s"] = data.size_bytes / (data.time_us * 1e3)   # sendrecv: busbw = algbw
        out.append(P2PSweep(f"Vidur DGX {gpu.upper()} send_recv NVLink", system, profile, data))
    return tuple(out)


def point_table(sweep: P2PSweep, profile: Profile) -> np.ndarray:
    """Rows: NCCL latency (us), seconds per byte / protocol factor, size; per point."""
    tuner = network_for(sweep, profile.model_copy(update={"fabric": {}})).tuner
    rows = []
    for size in sweep.data.size_bytes.to_numpy(float):
        a, p = tuner.nccl_pick("sendrecv", size, (0, 1))
        ctx = tuner.ctx("sendrecv", size, (0, 1))
        rows.append((tuner.latency(a, p, ctx, fitted=False) * 1e6,
                     tuner.seconds_per_byte(a, ctx) / tuner.protocol_factor(a, p, ctx), size))
    return np.array(rows).T


def predict(theta, x: np.ndarray) -> np.ndarray:
    base, eff_max, log_bh, gamma = theta
    lat0, spb, size = x
    return (lat0 + base) * 1e-6 + size * spb * (1.0 + (np.exp(log_bh) / size) ** gamma) / eff_max


def fit_p2p(sweep: P2PSweep, profile: Profile, idx: np.ndarray | None = None,
            n_boot: int = 30) -> Fit:
    x = point_table(sweep, profile)
    y = sweep.data.time_us.to_numpy(float) * 1e-6
    if idx is not None:
        x, y = x[:, idx], y[idx]
    # gamma <= 1: with a steeper ramp the time would fall as the size grows below
    # bytes_half (d t / d S has the sign of 1 + (1 - gamma)(bytes_half / S)^gamma), and
    # every size under 1 MiB (not measured here) would be extrapolated from that.
    lo = [-float(x[0].min()), 0.05, np.log(1e1), 0.2]
    hi = [200.0, 1.5, np.log(1e11), 1.0]
    # A few deterministic starts (as fit_fabric); only the best one is bootstrapped
    # (``fit_curve`` repeats its solve from the same start, so the estimate is that one).
    best = None
    for log_bh in np.log([1e5, 1e6, 1e7]):
        start = [0.0, 0.8, log_bh, 0.8]
        th = robust_least_squares(lambda t: np.log(predict(t, x) / y), start, (lo, hi)).x
        err = geomean_abs_error(predict(th, x), y)
        if best is None or err < best[0] - 1e-9:
            best = (err, start)
    return fit_curve(predict, x, y, best[1], (lo, hi), NAMES,
                lambda th: dict(zip(NAMES, (th[0], th[1], float(np.exp(th[2])), th[3]),
                                    strict=True)), n_boot=n_boot, robust=True)


def _theta(fit: Fit) -> list[float]:
    p = fit.params
    return [p["base_us"], p["eff_max"], np.log(p["bytes_half"]), p["gamma"]]


def p2p_errors(sweep: P2PSweep, profile: Profile) -> dict[str, float]:
    """Geomean |error|: fitted on the whole sweep and predicted back (``same``), fitted
    on every other size and predicting the rest (``held_out``)."""
    x = point_table(sweep, profile)
    y = sweep.data.time_us.to_numpy(float) * 1e-6
    n = len(y)
    out = {}
    for key, f_idx, p_idx in (("same", np.arange(n), np.arange(n)),
                              ("held_out", np.arange(0, n, 2), np.arange(1, n, 2))):
        th = _theta(fit_p2p(sweep, profile, f_idx, n_boot=1))
        out[key] = geomean_abs_error(predict(th, x[:, p_idx]), y[p_idx])
    return out


def validate(profile: Profile | None = None) -> pd.DataFrame:
    """Predicted (the flow engine, each sweep's built-in profile) vs measured send/recv."""
    rows = []
    for s in p2p_sweeps():
        net = network_for(s, profile)
        for size, meas in s.data[["size_bytes", "time_us"]].itertuples(index=False):
            t = net.collective_time("sendrecv", float(size), CommGroup((0, 1))) * 1e6
            rows.append({"sweep": s.name, "size_bytes": int(size), "measured_us": meas,
                         "predicted_us": round(t, 2), "error_pct": round((meas / t - 1) * 100, 1)})
    return pd.DataFrame(rows)
