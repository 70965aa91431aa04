"""Fit the flow model's per-link-class parameters (profile ``fabric`` section).

The model is the tuner's (sim/network/collectives/tuner.py): for every NCCL candidate
(algorithm, protocol) t = NCCL latency + base_us + intra * step_us(nvlink) +
inter * step_us(network) + bytes * spb / (protocol factor * eff(S)); the prediction is
the fastest candidate, as NCCL would pick it. One parameter set per link class for all
sweeps of that class (no per-size or per-sweep terms): ``nvlink`` from the single-node
sweeps, then ``network`` from the multi-node sweep with ``nvlink`` held fixed.
"""

from __future__ import annotations

import numpy as np

from calibration.fitting import Fit, _fit
from calibration.validate_nccl import Sweep, network_for
from hw_models.profile import FabricCurve, Profile
from sim.network.collectives.base import ALGORITHMS
from sim.network.collectives.tuner import nccl_constants

NAMES = ("base_us", "step_us", "eff_max", "bytes_half", "gamma")


def candidate_table(sweep: Sweep, profile: Profile) -> dict[str, np.ndarray]:
    """(points x candidates) arrays of the fit-independent parts of each prediction."""
    net = network_for(sweep, profile.model_copy(update={"fabric": {}}))
    ranks = tuple(range(sweep.gpus))
    sizes = sweep.data.size_bytes.to_numpy(float)
    ctx = net.tuner.ctx("all_reduce", 1.0, ranks)
    cols = {k: [] for k in ("lat0", "intra", "inter", "spb", "bwf")}
    for a in ALGORITHMS.values():
        if "all_reduce" not in a.kinds or not a.tuned or not a.available(ctx):
            continue
        for p in a.protos:
            intra, inter = a.steps(ctx)
            cols["lat0"].append(net.tuner.latency(a, p, ctx) * 1e6)
            cols["intra"].append(intra)
            cols["inter"].append(inter)
            cols["spb"].append(net.tuner.seconds_per_byte(a, ctx))
            cols["bwf"].append(nccl_constants()["bandwidth_factor"][a.lat_key][p])
    out = {k: np.tile(np.asarray(v, float), (len(sizes), 1)) for k, v in cols.items()}
    out["size"] = np.tile(sizes[:, None], (1, len(cols["lat0"])))
    out["time"] = sweep.data.time_us.to_numpy(float) * 1e-6
    return out


def predict(theta, tab, fixed_step_nvlink: float | None) -> np.ndarray:
    base, step, eff_max, log_bh, gamma = theta
    s_intra = step if fixed_step_nvlink is None else fixed_step_nvlink
    s_inter = 0.0 if fixed_step_nvlink is None else step
    eff = eff_max / (1.0 + (np.exp(log_bh) / tab["size"]) ** gamma)
    lat = (tab["lat0"] + base + tab["intra"] * s_intra + tab["inter"] * s_inter) * 1e-6
    return np.min(lat + tab["size"] * tab["spb"] / (tab["bwf"] * eff), axis=1)


def fit_class(tables: list[dict], fixed_step_nvlink: float | None = None) -> Fit:
    tab = {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}
    idx = np.arange(len(tab["time"]))

    def model(th, i):
        return predict(th, {k: v[i] for k, v in tab.items()}, fixed_step_nvlink)

    def to_params(th):
        return {"base_us": th[0], "step_us": th[1], "eff_max": th[2],
                "bytes_half": float(np.exp(th[3])), "gamma": th[4]}

    return _fit(model, idx, tab["time"], [2.0, 1.0, 0.8, np.log(1e6), 1.0],
                ([-20.0, 0.0, 0.05, np.log(1e2), 0.2], [100.0, 50.0, 1.5, np.log(1e11), 4.0]),
                NAMES, to_params, n_boot=30)


def fit_profile_fabric(profile: Profile, nvlink: list[Sweep], network: list[Sweep]
                       ) -> dict[str, Fit]:
    fits = {"nvlink": fit_class([candidate_table(s, profile) for s in nvlink])}
    if network:
        nvl = FabricCurve(**fits["nvlink"].params)
        prof = profile.model_copy(update={"fabric": {"nvlink": nvl}})
        tabs = [candidate_table(s, prof) for s in network]
        # Intra-domain hops of the multi-node sweeps keep the nvlink fit's per-hop cost.
        for t in tabs:
            t["lat0"] = t["lat0"] + t["intra"] * nvl.step_us
        fits["network"] = fit_class(tabs, fixed_step_nvlink=0.0)
    return fits
