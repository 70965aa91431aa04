"""Fit the flow model's per-link-class parameters (profile ``fabric`` section).

The model is the tuner's (sim/network/collectives/tuner.py): for every NCCL candidate
(algorithm, protocol) t = NCCL latency + base_us + intra * step_us(nvlink) +
inter * step_us(network) + size term / (protocol factor * eff(S)); the prediction is
the fastest candidate, as NCCL would pick it. The size term is bytes * spb, or for ring
LL (streamed) max(chunk term on S/n, bus term at eff_max). No per-size or per-sweep
terms: ``nvlink`` gets one curve per protocol (``nvlink.LL`` ... with base_us, step_us,
eff_max, bytes_half; gamma shared) fitted on all single-node sweeps at once; ``network``
one curve fitted on the multi-node sweeps with the nvlink curves held fixed.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from calibration.fitting import Fit, _fit
from calibration.validate_nccl import Sweep, network_for
from hw_models.profile import FabricCurve, Profile
from sim.network.collectives.base import ALGORITHMS
from sim.network.collectives.ring import PER_RANK
from sim.network.collectives.tuner import PROTOCOLS, STREAMED, nccl_constants

NAMES = ("base_us", "step_us", "eff_max", "bytes_half", "gamma")
# Start and bounds per protocol: base_us, step_us, eff_max, log(bytes_half); then gamma.
_P0, _LO, _HI = [2.0, 1.0, 0.8, np.log(1e5)], [-20.0, -0.5, 0.05, np.log(1e1)], \
    [200.0, 20.0, 1.5, np.log(1e11)]


def candidate_table(sweep: Sweep, profile: Profile, sizes: np.ndarray | None = None,
                    times_s: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """(points x candidates) arrays of the fit-independent parts of each prediction."""
    net = network_for(sweep, profile.model_copy(update={"fabric": {}}))
    ranks = tuple(range(sweep.gpus))
    if sizes is None:
        sizes = sweep.data.size_bytes.to_numpy(float)
        times_s = sweep.data.time_us.to_numpy(float) * 1e-6
    ctx = net.tuner.ctx("all_reduce", 1.0, ranks)
    cols = {k: [] for k in ("lat0", "intra", "inter", "spb", "bwf", "proto", "stream")}
    for a in ALGORITHMS.values():
        if "all_reduce" not in a.kinds or not a.tuned or not a.available(ctx):
            continue
        for p in a.protos:
            intra, inter = a.steps(ctx)
            streamed = p in STREAMED and a.name == "ring" and sweep.nodes == 1
            cols["lat0"].append(net.tuner.latency(a, p, ctx) * 1e6)
            cols["intra"].append(intra)
            cols["inter"].append(inter)
            cols["spb"].append(net.tuner.seconds_per_byte(a, ctx))
            cols["bwf"].append(nccl_constants()["bandwidth_factor"][a.lat_key][p])
            cols["proto"].append(PROTOCOLS.index(p))
            cols["stream"].append(1.0 / (sweep.gpus * PER_RANK["all_reduce"](sweep.gpus))
                                  if streamed else 0.0)
    out = {k: np.tile(np.asarray(v, float), (len(sizes), 1)) for k, v in cols.items()}
    out["size"] = np.tile(np.asarray(sizes, float)[:, None], (1, len(cols["lat0"])))
    out["n"] = np.full_like(out["size"], sweep.gpus)
    out["time"] = np.asarray(times_s, float)
    return out


def _eff(eff_max, bytes_half, gamma, size):
    return eff_max / (1.0 + (bytes_half / size) ** gamma)


def predict_nvlink(theta, tab) -> np.ndarray:
    """Per-protocol curves: theta = 4 per protocol (PROTOCOLS order) + shared gamma."""
    th = np.asarray(theta[:-1]).reshape(len(PROTOCOLS), 4)[tab["proto"].astype(int)]
    base, step, eff_max, bh, gamma = th[..., 0], th[..., 1], th[..., 2], np.exp(th[..., 3]), \
        theta[-1]
    lat = (tab["lat0"] + base + tab["intra"] * step) * 1e-6
    bus = tab["size"] * tab["spb"]
    t_bus = bus / (tab["bwf"] * _eff(eff_max, bh, gamma, tab["size"]))
    chunk = bus * tab["stream"] / (tab["bwf"] * _eff(eff_max, bh, gamma, tab["size"] / tab["n"]))
    t_size = np.where(tab["stream"] > 0, np.maximum(chunk, bus / (tab["bwf"] * eff_max)), t_bus)
    return np.min(lat + t_size, axis=1)


def predict_network(theta, tab) -> np.ndarray:
    base, step, eff_max, log_bh, gamma = theta
    lat = (tab["lat0"] + base + tab["inter"] * step) * 1e-6
    eff = _eff(eff_max, np.exp(log_bh), gamma, tab["size"])
    return np.min(lat + tab["size"] * tab["spb"] / (tab["bwf"] * eff), axis=1)


def _stack(tables: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}


def fit_nvlink(tables: list[dict], n_boot: int = 30) -> dict[str, Fit]:
    tab = _stack(tables)
    idx = np.arange(len(tab["time"]))

    def model(th, i):
        return predict_nvlink(th, {k: v[i] for k, v in tab.items()})

    def to_params(th):
        out = {}
        for j, p in enumerate(PROTOCOLS):
            b, s, e, lb = th[4 * j:4 * j + 4]
            out |= {f"{p}.base_us": b, f"{p}.step_us": s, f"{p}.eff_max": e,
                    f"{p}.bytes_half": float(np.exp(lb))}
        return out | {"gamma": th[-1]}

    k = len(PROTOCOLS)
    bounds = (_LO * k + [0.2], _HI * k + [4.0])
    # The min over protocols makes the surface multi-modal: start from a few points.
    starts = [_P0 * k + [1.0], [20.0, 0.5, 0.8, np.log(1e6)] * k + [0.5],
              [5.0, 0.1, 0.9, np.log(1e4)] * k + [1.5]]
    best = min((least_squares(lambda th: np.log(model(th, idx) / tab["time"]), x0,
                              bounds=bounds) for x0 in starts), key=lambda r: r.cost)
    fit = _fit(model, idx, tab["time"], best.x, bounds, None, to_params, n_boot=n_boot)
    return split_protocols(fit)


def split_protocols(fit: Fit) -> dict[str, Fit]:
    """One Fit per protocol (``LL`` ...) in the profile's FabricCurve shape."""
    out = {}
    for p in PROTOCOLS:
        keys = {n: f"{p}.{n}" for n in NAMES[:-1]} | {"gamma": "gamma"}
        out[p] = Fit({n: fit.params[k] for n, k in keys.items()}, fit.quality,
                     {n: fit.uncertainty[k] for n, k in keys.items()})
    return out


def fit_network(tables: list[dict], n_boot: int = 30) -> Fit:
    tab = _stack(tables)
    idx = np.arange(len(tab["time"]))

    def model(th, i):
        return predict_network(th, {k: v[i] for k, v in tab.items()})

    def to_params(th):
        return {"base_us": th[0], "step_us": th[1], "eff_max": th[2],
                "bytes_half": float(np.exp(th[3])), "gamma": th[4]}

    return _fit(model, idx, tab["time"], [2.0, 1.0, 0.8, np.log(1e6), 1.0],
                ([-20.0, 0.0, 0.05, np.log(1e2), 0.2], [100.0, 50.0, 1.5, np.log(1e11), 4.0]),
                NAMES, to_params, n_boot=n_boot)


def fit_profile_fabric(profile: Profile, nvlink: list[Sweep], network: list[Sweep]
                       ) -> dict[str, Fit]:
    per = fit_nvlink([candidate_table(s, profile) for s in nvlink])
    fits = {f"nvlink.{p}": f for p, f in per.items()}
    if network:
        curves = {f"nvlink.{p}": FabricCurve(**f.params) for p, f in per.items()}
        prof = profile.model_copy(update={"fabric": curves})
        tabs = [candidate_table(s, prof) for s in network]
        # Intra-domain hops of the multi-node sweeps keep the nvlink fits' per-hop cost.
        for t in tabs:
            step = np.array([curves[f"nvlink.{PROTOCOLS[int(i)]}"].step_us
                             for i in t["proto"][0]])
            t["lat0"] = t["lat0"] + t["intra"] * step
        fits["network"] = fit_network(tabs)
    return fits
