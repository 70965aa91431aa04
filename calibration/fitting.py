"""Curve fitting (scipy least squares in log-time) with fit quality and bootstrap spread.

Each ``fit_*`` takes tidy measurements and returns (params, quality, uncertainty).
The model functions are the ones the simulator uses, so a fitted profile predicts
exactly what the fit saw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from hw_models.compute import smooth_max, wave_factor


@dataclass(frozen=True)
class Fit:
    params: dict[str, float]
    quality: dict[str, float]
    uncertainty: dict[str, dict[str, float]]


def fit_line(x, y) -> tuple[float, float]:
    """(intercept, slope) of the ordinary least-squares line of ``y`` on ``x``."""
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return float(intercept), float(slope)


def _log_residuals(model: Callable, x: np.ndarray, y: np.ndarray) -> Callable:
    def residuals(theta: np.ndarray) -> np.ndarray:
        return np.log(model(theta, x)) - np.log(y)
    return residuals


# Huber's tuning constant (95% efficiency under Gaussian noise) and the MAD-to-sigma
# factor of a normal distribution: the textbook robust M-estimator (Huber 1964;
# Holland & Welsch 1977), no per-dataset choice.
HUBER_K = 1.345
MAD_SIGMA = 1.4826


def robust_least_squares(fun: Callable, theta0, bounds):
    """Huber M-estimate: least squares first, then a refit with the Huber loss at
    HUBER_K x the residuals' robust scale (MAD). Points the smooth model cannot follow
    (a protocol switch inside a collective sweep) then weigh linearly, not squared,
    so a few of them cannot bend the curve away from every other point."""
    res = least_squares(fun, theta0, bounds=bounds)
    r = res.fun
    scale = MAD_SIGMA * float(np.median(np.abs(r - np.median(r))))
    if scale <= 0.0:
        return res
    return least_squares(fun, res.x, bounds=bounds, loss="huber", f_scale=HUBER_K * scale)


def fit_curve(model: Callable, x: np.ndarray, y: np.ndarray, theta0: Sequence[float],
         bounds: tuple[Sequence[float], Sequence[float]], names: Sequence[str],
         to_params: Callable[[np.ndarray], dict[str, float]], seed: int = 0,
         n_boot: int = 200, robust: bool = False) -> Fit:
    """Least squares on log time (``robust``: the Huber M-estimate,
    robust_least_squares), R^2 on log time, and a bootstrap over the points."""
    solve = robust_least_squares if robust else least_squares
    res = solve(_log_residuals(model, x, y), theta0, bounds=bounds)
    pred = model(res.x, x)
    rel = pred / y - 1.0
    log_y = np.log(y)
    ss_res = float(np.sum((np.log(pred) - log_y) ** 2))
    ss_tot = float(np.sum((log_y - log_y.mean()) ** 2)) or 1.0
    quality = {"r2_log": round(1.0 - ss_res / ss_tot, 4), "n_points": int(len(y)),
               "median_abs_err_pct": round(float(np.median(np.abs(rel))) * 100, 2),
               "max_abs_err_pct": round(float(np.max(np.abs(rel))) * 100, 2)}
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        boot = solve(_log_residuals(model, x[..., idx], y[idx]), res.x, bounds=bounds)
        samples.append(list(to_params(boot.x).values()))
    arr = np.array(samples)
    params = to_params(res.x)
    unc = {k: {"p05": _r(np.percentile(arr[:, i], 5)), "p95": _r(np.percentile(arr[:, i], 95))}
           for i, k in enumerate(params)}
    return Fit({k: _r(v) for k, v in params.items()}, quality, unc)


def _r(v: float) -> float:
    return float(f"{float(v):.5g}")


# Output tile of the GEMM kernels the wave term counts: CUTLASS's default threadblock
# tile for SM80 fp16/bf16 tensor-op GEMMs is 128x256 (include/cutlass/gemm/device/
# default_gemm_configuration.h, DefaultGemmConfiguration<OpClassTensorOp, Sm80, half_t>:
# GemmShape<128, 256, 64>); SM90 cuBLAS/CUTLASS kernels use 128x256 and 256x128 tiles
# among others. On the Vidur training splits 128x256 fits as well as any of 64..256
# (docs/calibration.md), so one sourced tile is used for both parts.
GEMM_TILE = (128, 256)


def fit_gemm(m, n, k, time_s, peak_flops: float, hbm_bw: float, bw_eff: float,
             elem_bytes: float, n_boot: int = 200, sms: int = 0,
             tile: tuple[int, int] = GEMM_TILE, fit_bw: bool = False,
             eff_cap: float = 1.0) -> Fit:
    """t = launch + smooth_max((F wave + F_half)/(peak eff_max), bytes/(bw bw_eff), p).

    With ``sms`` (the GPU's SM count from the catalog) the wave-quantization factor
    ``hw_models.compute.wave_factor`` multiplies the FLOPs and its exponent
    ``wave_exp`` is fitted; without it (sms=0) the term is off. ``fit_bw``: also fit the
    GEMMs' own bandwidth efficiency (``bw_eff``, replacing the given one), for data that
    hold memory-bound shapes (fitting.memory_bound_shapes). ``eff_cap``: upper bound of
    eff_max, where a measured maximum achievable efficiency is known (data whose largest
    shapes stop short of saturation would otherwise extrapolate past it)."""
    m, n, k, t = (np.asarray(a, float) for a in (m, n, k, time_s))
    flops = 2 * m * n * k
    nbytes = elem_bytes * (m * k + k * n + m * n)
    waves = bool(sms)
    # ceil(w)/w of every shape once (wave_factor's base); a residual evaluation only
    # raises it to the fitted exponent (wave_factor(..., 1.0) is that base exactly).
    base = wave_factor(m, n, sms, tile[0], tile[1], 1.0) if waves else np.ones_like(m)
    x = np.stack([flops, nbytes, base])

    iw = 4 + waves      # index of bw_eff in theta when fitted

    def model(th, x):
        eff_max, log_fh, launch_us, p = th[:4]
        wave = (x[2] ** th[4] if th[4] else 1.0) if waves else 1.0
        tc = (x[0] * wave + np.exp(log_fh)) / (peak_flops * eff_max)
        tm = x[1] / (hbm_bw * (th[iw] if fit_bw else bw_eff))
        return launch_us * 1e-6 + smooth_max(tc, tm, p)

    def to_params(th):
        out = {"eff_max": th[0], "flops_half": float(np.exp(th[1])), "launch_us": th[2],
               "roofline_p": th[3]}
        if waves:
            out |= {"tile_m": tile[0], "tile_n": tile[1], "wave_exp": th[4]}
        if fit_bw:
            out["bw_eff"] = th[iw]
        return out

    theta0 = [min(0.8, 0.95 * eff_cap), np.log(1e9), 3.0, 2.0] + ([0.5] if waves else []) + ([bw_eff] if fit_bw else [])
    lo = [0.05, np.log(1e5), 0.0, 1.0] + ([0.0] if waves else []) + ([0.1] if fit_bw else [])
    hi = [eff_cap, np.log(1e13), 50.0, 8.0] + ([1.0] if waves else []) + ([1.0] if fit_bw else [])
    fit = fit_curve(model, x, t, theta0, (lo, hi), list(to_params(np.array(theta0))), to_params,
               n_boot=n_boot)
    if waves:   # tile sizes are sourced constants, not fitted: no spread, exact ints
        fit.params["tile_m"], fit.params["tile_n"] = tile
        for key in ("tile_m", "tile_n"):
            fit.uncertainty.pop(key, None)
    return fit


def memory_bound_shapes(m, n, k, elem_bytes: float, peak_flops: float, hbm_bw: float) -> int:
    """How many GEMMs lie below the roofline's ridge (FLOPs per byte < peak / bandwidth)."""
    m, n, k = (np.asarray(a, float) for a in (m, n, k))
    intensity = 2 * m * n * k / (elem_bytes * (m * k + k * n + m * n))
    return int(np.sum(intensity < peak_flops / hbm_bw))


def fit_attention(seq, eff, n_boot: int = 200, fall: bool = False) -> Fit:
    """Attention efficiency vs kv length: eff = eff_max s / (s + s_half).

    ``fall``: also the decline at long sequences, eff / (1 + s / s_fall) (the curve
    ``hw_models.compute.attention_efficiency`` prices), for kernels whose measured
    efficiency peaks inside the measured range; the longest measured length is recorded
    as ``seq_max``, beyond which the priced efficiency is held."""
    seq, eff = np.asarray(seq, float), np.asarray(eff, float)

    def model(th, s):
        return th[0] * s / (s + th[1])

    if not fall:
        return fit_curve(model, seq, eff, [0.6, 300.0], ([0.01, 0.0], [1.0, 1e5]),
                         ["eff_max", "seq_half"], lambda th: {"eff_max": th[0], "seq_half": th[1]},
                         n_boot=n_boot)

    def model_fall(th, s):                  # the rising curve, declining past s_fall
        return model(th, s) / (1.0 + s / th[2])

    fit = fit_curve(model_fall, seq, eff, [0.6, 1000.0, 1e5], ([0.01, 0.0, 1e3], [1.0, 1e5, 1e8]),
                    ["eff_max", "seq_half", "seq_fall"],
                    lambda th: {"eff_max": th[0], "seq_half": th[1], "seq_fall": th[2]},
                    n_boot=n_boot)
    return Fit(fit.params | {"seq_max": float(seq.max())}, fit.quality, fit.uncertainty)


def fit_memory_launch(nbytes, time_s, hbm_bw: float, bw_eff: float) -> Fit:
    """Kernel launch/tail overhead of memory-bound kernels, slope fixed by STREAM."""
    nbytes, t = np.asarray(nbytes, float), np.asarray(time_s, float)

    def model(th, b):
        return th[0] * 1e-6 + b / (hbm_bw * bw_eff)

    return fit_curve(model, nbytes, t, [3.0], ([0.0], [100.0]), ["launch_us"],
                lambda th: {"launch_us": th[0]})


def collective_model(th, bus_bytes, link_bw):
    """t = latency + bus_bytes / (link_bw eff(S)), eff = eff_max / (1 + (S_half/S)^gamma)."""
    lat_us, eff_max, log_bh, gamma = th
    eff = eff_max / (1.0 + (np.exp(log_bh) / bus_bytes) ** gamma)
    return lat_us * 1e-6 + bus_bytes / (link_bw * eff)


def fit_collective(bus_bytes, time_s, link_bw: float, n_boot: int = 200) -> Fit:
    bus_bytes, t = np.asarray(bus_bytes, float), np.asarray(time_s, float)

    def model(th, b):
        return collective_model(th, b, link_bw)

    def to_params(th):
        return {"latency_us": th[0], "eff_max": th[1], "bytes_half": float(np.exp(th[2])),
                "gamma": th[3]}

    return fit_curve(model, bus_bytes, t, [10.0, 0.8, np.log(1e6), 1.0],
                ([0.0, 0.05, np.log(1e2), 0.2], [1e4, 1.5, np.log(1e11), 4.0]),
                ["latency_us", "eff_max", "bytes_half", "gamma"], to_params, n_boot=n_boot)


def fit_collective_hops(bus_bytes, time_s, link_bw: float, moved_us: Callable,
                        ll_hops=None, n_boot: int = 200) -> Fit:
    """One collective curve on sweeps at several node counts (same GPUs per node):
    t = latency + moved_us(level_us) + bus_bytes / (link_bw eff(S)), where ``moved_us``
    gives per point NCCL's latency on its group less that on the fit group, with
    ``level_us`` added to each tree level (analytical.nccl_latency_us). Two node counts
    separate the per-level latency from the fit group's; Huber (``robust``) as the fabric
    fits, since the 8-node echo log's 1 KiB row (294 us against 73 at 2 KiB) is no curve's.
    ``ll_hops``: per point the tree's LL store-and-forward in extra transfers of the bus
    bytes (analytical.tree_ll_hops), each at ``link_bw`` x the fitted ``ll_hop_eff``."""
    bus_bytes, t = np.asarray(bus_bytes, float), np.asarray(time_s, float)
    hops = np.zeros_like(t) if ll_hops is None else np.asarray(ll_hops, float)
    idx = np.arange(len(t), dtype=float)

    def model(th, i):
        lat, hop = th[0], th[1]
        j = i.astype(int)
        moved = np.asarray(moved_us(hop), float)[j]
        return ((lat + moved) * 1e-6 + collective_model((0.0, *th[2:5]), bus_bytes[j], link_bw)
                + hops[j] * bus_bytes[j] / (link_bw * th[5]))

    def to_params(th):
        out = {"latency_us": th[0], "level_us": th[1], "eff_max": th[2],
               "bytes_half": float(np.exp(th[3])), "gamma": th[4]}
        return out | ({"ll_hop_eff": th[5]} if hops.any() else {})

    # without store-and-forward points the hop rate is fixed at the bound (its term is 0)
    hop_lo = 0.005 if hops.any() else 1.5 - 1e-9
    return fit_curve(model, idx, t, [10.0, 0.0, 0.8, np.log(1e6), 1.0, max(0.1, hop_lo)],
                     ([0.0, -5.0, 0.05, np.log(1e2), 0.2, hop_lo],
                      [1e4, 20.0, 1.5, np.log(1e11), 4.0, 1.5]),
                     ["latency_us", "level_us", "eff_max", "bytes_half", "gamma", "ll_hop_eff"],
                     to_params, n_boot=n_boot, robust=True)


def fit_collective_on_plateau(bus_bytes, time_s, link_bw: float, eff_max: float,
                              n_boot: int = 200) -> Fit:
    """A collective curve (``collective_model``) whose plateau ``eff_max`` is fixed from
    other measurements: latency, bytes_half and gamma fitted; the parameters carry all four."""
    bus_bytes, t = np.asarray(bus_bytes, float), np.asarray(time_s, float)

    def model(th, b):
        return collective_model([th[0], eff_max, th[1], th[2]], b, link_bw)

    def to_params(th):
        return {"latency_us": th[0], "bytes_half": float(np.exp(th[1])), "gamma": th[2]}

    fit = fit_curve(model, bus_bytes, t, [10.0, np.log(1e6), 1.0],
                    ([0.0, np.log(1e2), 0.2], [1e4, np.log(1e11), 4.0]),
                    ["latency_us", "bytes_half", "gamma"], to_params, n_boot=n_boot)
    p = fit.params
    return Fit({"latency_us": p["latency_us"], "eff_max": _r(eff_max),
                "bytes_half": p["bytes_half"], "gamma": p["gamma"]}, fit.quality, fit.uncertainty)


def fit_memory(nbytes, time_s, peak_bw: float, n_boot: int = 200) -> Fit:
    """Memory-bound kernel: t = launch + bytes / (peak_bw bw_eff), both parameters free
    (for a measured device, whose streaming bandwidth is itself measured)."""
    nbytes, t = np.asarray(nbytes, float), np.asarray(time_s, float)

    def model(th, b):
        return th[1] * 1e-6 + b / (peak_bw * th[0])

    return fit_curve(model, nbytes, t, [0.5, 3.0], ([1e-3, 0.0], [1.0, 1e4]), ["bw_eff", "launch_us"],
                lambda th: {"bw_eff": th[0], "launch_us": th[1]}, n_boot=n_boot)
