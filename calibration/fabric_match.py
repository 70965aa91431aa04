"""Whether two ``fabric`` sections predict the same times over the data they were fitted on.

A flow-model curve (calibration/fit_fabric.py, fit_p2p.py) carries parameters that its
sweeps do not pin down: a base latency fitted to ~0, the split of latency between once
(``base_us``) and per hop (``step_us``) where a protocol is only measured at one hop
count, the knee of a ramp (``bytes_half``) below the smallest measured size. Rebuilt on
another machine or SciPy / NumPy release, such a parameter moves far more than 1% while
the times the curve predicts at its measured points stay put (DGX A100 ``nvlink.LL``:
-6.48 us + 2.29 us per hop against -2.50 us + 2.00 us per hop, 25.5 us both at the 14
hops of the only group size where NCCL's model picks LL). A fabric section therefore
matches when every curve predicts, at every point of the sweeps it was fitted on (their
message sizes, group sizes and hop counts, the protocol NCCL's model picks there), a time
within REL of the committed curve's. Outside those points the data decide nothing.

Each curve is judged alone: a network curve's multi-node points price their intra-node
hops with the committed nvlink curves on both sides, so an nvlink per-hop cost that only
single-node data can fix does not decide the network curve. A per-algorithm curve
(``nvlink.ring.Simple``: the NVLS-fitted ``nvlink.Simple`` latency and ramp on the published
ring plateau) is judged at the points of its protocol's sweeps, where its latency and ramp
were fitted; its plateau is the mean of published points and has no drift."""

from __future__ import annotations

import numpy as np

from calibration import fit_fabric, fit_p2p
from hw_models.profile import FabricCurve, Profile, parse
from sim.network.collectives.tuner import PROTOCOLS

REL = 0.01      # relative tolerance of a predicted time at a measured point


def curve_times(params: dict, tab: dict) -> np.ndarray:
    """Time (s) of one all_reduce curve at the points of a fit_fabric.point_table
    (``intra`` holds the hops the curve's ``step_us`` is paid on): the fit's own model
    with every protocol slot set to this curve."""
    u = {**FabricCurve().model_dump(), **params}
    with np.errstate(divide="ignore"):
        vals = [u[n] if n != "bytes_half" else np.log(u[n]) for n in fit_fabric.PER_PROTO]
    theta = np.repeat(vals, len(PROTOCOLS))
    return fit_fabric.predict_nvlink(theta, tab, fit_fabric.FULL)


def p2p_times(params: dict, x: np.ndarray) -> np.ndarray:
    """Time (s) of a point-to-point curve at the points of a fit_p2p.point_table."""
    with np.errstate(divide="ignore"):
        theta = [params["base_us"], params["eff_max"], np.log(params["bytes_half"]),
                 params["gamma"]]
    return fit_p2p.predict(theta, x)


def _select(tab: dict, proto: str) -> dict:
    keep = tab["proto"] == PROTOCOLS.index(proto)
    return {k: v[keep] for k, v in tab.items()}


def fabric_points(profile: Profile, sweeps: dict[str, list]) -> dict[str, object]:
    """Per curve of ``profile.fabric``, the fit-independent table of its measured points
    (``sweeps`` as build_profiles.fabric_sweeps gives them); a curve with no point gets
    an empty table."""
    bare = profile.model_copy(update={"fabric": {}})
    out: dict[str, object] = {}
    tabs = {cls: [fit_fabric.point_table(s, bare) for s in sweeps[cls]]
            for cls in ("nvlink", "network")}
    nvlink = {k: c for k, c in profile.fabric.items() if k.startswith("nvlink.")}
    tabs["network"] = [t | {"intra": t["inter"]}
                       for t in fit_fabric.with_intra_steps(tabs["network"], nvlink)]
    for key in profile.fabric:
        # A per-algorithm curve (``nvlink.ring.Simple``) is judged at its protocol's
        # points: its latency and ramp are that protocol's fit (fit_fabric.ring_on_plateau).
        cls, _, proto = key.partition(".")
        proto = proto.rpartition(".")[2]
        if proto == "p2p":
            xs = [fit_p2p.point_table(s, bare) for s in sweeps["p2p"]]
            out[key] = np.concatenate(xs, axis=1) if xs else np.zeros((3, 0))
        elif tabs.get(cls):
            out[key] = _select({k: np.concatenate([t[k] for t in tabs[cls]])
                                for k in tabs[cls][0]}, proto)
        else:
            out[key] = {"size": np.zeros(0)}
    return out


def prediction_mismatches(new: dict, committed: dict, points: dict[str, object],
                          path: str = ".fabric") -> list[str]:
    """Curves of ``new`` whose predicted time at a measured point is more than REL off
    the committed curve's (keys and parameter names must be the same)."""
    if not isinstance(new, dict) or set(new) != set(committed):
        return [f"{path}: keys differ"]
    out = []
    for key, old in committed.items():
        if not isinstance(new[key], dict) or set(new[key]) != set(old):
            out.append(f"{path}.{key}: keys differ")
            continue
        pts = points[key]
        if key.endswith(".p2p"):
            a, b = p2p_times(new[key], pts), p2p_times(old, pts)
        elif len(pts["size"]):
            a, b = curve_times(new[key], pts), curve_times(old, pts)
        else:
            a = b = np.zeros(0)
        if len(b) == 0:
            out.append(f"{path}.{key}: no measured point to compare on")
            continue
        dev = np.abs(a / b - 1.0)
        if not dev.max() <= REL:
            i = int(np.argmax(dev))
            out.append(f"{path}.{key}: {a[i] * 1e6:.4g} us against {b[i] * 1e6:.4g} us at a "
                       f"measured point ({dev[i]:.2%} apart; tolerance {REL:.0%})")
    return out


def fabric_mismatches(new_fabric: dict, committed: dict) -> list[str]:
    """``new_fabric`` against the committed profile's fabric section, by the times each
    curve predicts at the points of the sweeps it was fitted on."""
    from calibration.build_profiles import fabric_sweeps
    prof = parse(committed, source=committed.get("name", "profile"))
    points = fabric_points(prof, fabric_sweeps(prof.name))
    return prediction_mismatches(new_fabric, committed.get("fabric", {}), points)
