"""Fit the flow model's per-link-class parameters (profile ``fabric`` section).

The model is the tuner's (sim/network/collectives/tuner.py). At every size NCCL's own
model picks the (algorithm, protocol) pair (nccl_model.py), which does not depend on
the fit; the chosen pair's time is NCCL latency + base_us + intra * step_us(nvlink) +
inter * step_us(network) + size term / (protocol factor * eff(S)). The size term is
bytes * spb, or for ring LL (streamed) max(chunk term on S/n, bus term at eff_max); a
multi-node tree with LL adds its store-and-forward hops, each a transfer of the size term
at eff_max (``pipe``: Tuner.pipeline, sim/network/collectives/tree_pipeline.py).
No per-size or per-sweep terms: ``nvlink`` gets one curve per protocol (``nvlink.LL``
... with base_us, step_us, eff_max, bytes_half, gamma; gamma shared only where a protocol
has too few points, ``ramp_layout``) fitted on all single-node
sweeps of a system at once; ``network`` likewise per protocol (step_us shared) on the
multi-node sweeps with the nvlink curves held fixed.

Latency can never be negative: base_us and step_us are bounded below by minus the
smallest NCCL constant they are added to (over every algorithm of that protocol), so
every (algorithm, protocol, hop count) latency the tuner can produce is >= 0.

Because the pick is fixed per point, the residual is smooth in the parameters; a small
deterministic grid of starts (gamma x bytes_half, 12 least-squares runs of ~0.05 s)
finds the basin that one start can miss, then the bootstrap starts from the best.

The final fit is a Huber M-estimate (calibration/fitting.py robust_least_squares):
where NCCL's real switch between protocols or channel counts falls at another size than
its model's, the measured time has a kink that no smooth ramp follows, and those few
sizes would otherwise pull each curve off the others (2-GPU echo sweep: same-sweep
geomean 5.2% with least squares, 4.6% with Huber).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy.optimize import least_squares

from calibration.fitting import Fit, fit_curve
from calibration.validate_nccl import Sweep, network_for
from hw_models.errors import ClusterSimError
from hw_models.profile import FabricCurve, Profile
from sim.network.analytical import FIT_GROUP
from sim.network.collectives.base import ALGORITHMS
from sim.network.collectives.ring import PER_RANK
from sim.network.collectives.tuner import PROTOCOLS, STREAMED, nccl_constants, ramp_bytes

PER_PROTO = ("base_us", "step_us", "eff_max", "bytes_half", "gamma")
# Start and upper bounds: base_us, step_us, eff_max, log(bytes_half), gamma.
_P0 = {"base_us": 2.0, "step_us": 0.5, "eff_max": 0.8, "bytes_half": np.log(1e5), "gamma": 1.0}
_HI = {"base_us": 200.0, "step_us": 20.0, "eff_max": 1.5, "bytes_half": np.log(1e11),
       "gamma": 4.0}
_LO_EFF, _LO_LBH, _LO_GAMMA = 0.05, np.log(1e1), 0.2
_GRID = [(g, np.log(b)) for g in (0.3, 0.6, 1.0) for b in (1e3, 1e5, 1e7, 1e9)]


@dataclass(frozen=True)
class Layout:
    """Which per-protocol parameters are shared across protocols or fixed (a single
    sweep at one GPU count cannot separate base_us from step_us, for example)."""
    shared: frozenset[str] = frozenset()
    fixed: tuple[tuple[str, float], ...] = ()
    # The base_us slots hold base_us + step_us (the latency extra of a one-hop pattern):
    # see NETWORK_NODES.
    hop_base: bool = False

    def slots(self) -> list[tuple[str, str | None]]:
        fixed = dict(self.fixed)
        out = []
        for name in PER_PROTO:
            if name in fixed:
                continue
            out += [(name, None)] if name in self.shared else [(name, p) for p in PROTOCOLS]
        return out


FULL = Layout()
# Multi-node: the per-hop cost is shared across protocols (one number per network hop of
# this fabric; a single node count, e.g. the h100's four-node sweep, only fixes base +
# hops x step together); base, eff_max and bytes_half stay per protocol.
NETWORK = Layout(shared=frozenset({"step_us"}))
# Sweeps at two node counts or more separate base_us from step_us. Every pattern across
# nodes takes one network hop at least (a send, a ring step; the tree takes 2 log2(nodes)),
# so what must stay >= 0 there is NCCL's latency plus base_us + step_us, not base_us alone:
# the fit bounds base_us + step_us (and step_us) below instead of base_us and step_us each,
# which lets a per-hop cost above NCCL's come with a base below its constant (the echo A100
# logs: ~9.5 us per tree level against NCCL's 5.0, on a two-node floor below NCCL's).
# One ramp shape (gamma) for every protocol: NCCL's model runs each protocol in one size
# band only (echo A100: Simple from 128 MiB up, where the ramp is flat), so a protocol's
# own gamma is not identified outside it; fitted per protocol, Simple's went to its
# bound (gamma 4, bytes_half 114 MB: eff 0.0003 at 16 MiB), which priced every mid-size
# Simple transfer across nodes (pipeline sends, data-parallel rings) thousands of times
# too slow.
NETWORK_NODES = Layout(shared=frozenset({"step_us", "gamma"}), hop_base=True)


def ramp_layout(layout: Layout, proto_idx: np.ndarray) -> Layout:
    """``layout`` with one ramp shape (gamma) per protocol only where the data can fix
    it: every protocol with points has more points than its own free parameters;
    otherwise gamma is shared (Azure's 11 sizes leave LL128 two points)."""
    own = len([n for n, p in layout.slots() if p == PROTOCOLS[0]])
    counts = np.bincount(proto_idx.astype(int), minlength=len(PROTOCOLS))
    if all(c == 0 or c > own for c in counts):
        return layout
    return Layout(shared=layout.shared | {"gamma"}, fixed=layout.fixed, hop_base=layout.hop_base)


def latency_floor(proto: str, cls: str = "nvlink") -> tuple[float, float]:
    """Lowest base_us / step_us that keep every NCCL latency of ``proto`` >= 0 (the proxy
    overhead only raises intra-node steps of multi-node rings, so it is not counted)."""
    c = nccl_constants()
    algos = [a.lat_key for a in ALGORITHMS.values() if proto in a.protos]
    base = min(c["base_latency_us"][k][proto] for k in algos)
    step = min(c["hw_latency_us"][k][cls][proto] for k in algos)
    return -base, -step


def point_table(sweep: Sweep, profile: Profile, idx: np.ndarray | None = None
                ) -> dict[str, np.ndarray]:
    """Per measured size: the fit-independent parts of the prediction of NCCL's pick."""
    net = network_for(sweep, profile.model_copy(update={"fabric": {}}))
    tuner, ranks = net.tuner, tuple(range(sweep.gpus))
    data = sweep.data if idx is None else sweep.data.iloc[idx]
    cols = {k: [] for k in ("lat0", "intra", "inter", "spb", "bwf", "proto", "stream", "size",
                            "ramp_size", "pipe")}
    for size in data.size_bytes.to_numpy(float):
        a, p = tuner.nccl_pick("all_reduce", size, ranks)
        ctx = tuner.ctx("all_reduce", size, ranks)
        intra, inter = a.steps(ctx)
        streamed = p in STREAMED and a.name == "ring" and sweep.nodes == 1
        cols["lat0"].append(tuner.latency(a, p, ctx, fitted=False) * 1e6)
        cols["intra"].append(intra)
        cols["inter"].append(inter)
        cols["spb"].append(tuner.seconds_per_byte(a, ctx))
        cols["bwf"].append(tuner.protocol_factor(a, p, ctx))
        cols["proto"].append(PROTOCOLS.index(p))
        cols["stream"].append(1.0 / (sweep.gpus * PER_RANK["all_reduce"](sweep.gpus))
                              if streamed else 0.0)
        cols["size"].append(size)
        cols["ramp_size"].append(ramp_bytes(a.name, size, sweep.gpus))
        cols["pipe"].append(tuner.pipeline(a, p, ctx))
    out = {k: np.asarray(v, float) for k, v in cols.items()}
    out["n"] = np.full_like(out["size"], sweep.gpus)
    out["time"] = data.time_us.to_numpy(float) * 1e-6
    return out


def _eff(eff_max, bytes_half, gamma, size):
    return eff_max / (1.0 + (bytes_half / size) ** gamma)


@cache
def _gather(layout: Layout) -> dict[str, np.ndarray | int]:
    """Per name, where each protocol's value sits in (theta, then the fixed values):
    built once per layout so a residual evaluation only copies numbers."""
    slots, fixed = layout.slots(), dict(layout.fixed)
    out: dict[str, np.ndarray | int] = {}
    for j, name in enumerate(fixed):
        out[name] = np.full(len(PROTOCOLS), len(slots) + j)
    for name in PER_PROTO:
        if name not in fixed:
            out[name] = np.array([slots.index((name, None if name in layout.shared else p))
                                  for p in PROTOCOLS])
    return out


def unpack(theta, layout: Layout) -> dict[str, np.ndarray]:
    """theta -> {name: per-protocol array (PROTOCOLS order)}."""
    ext = np.concatenate([np.asarray(theta, float), [v for _, v in layout.fixed]])
    out = {k: ext[i] for k, i in _gather(layout).items()}
    if layout.hop_base:
        out["base_us"] = out["base_us"] - out["step_us"]
    return out


def predict_nvlink(theta, tab, layout: Layout = FULL) -> np.ndarray:
    u = unpack(theta, layout)
    i = tab["proto"].astype(int)
    base, step, eff_max, bh, gamma = u["base_us"][i], u["step_us"][i], u["eff_max"][i], \
        np.exp(u["bytes_half"][i]), u["gamma"][i]
    lat = (tab["lat0"] + base + tab["intra"] * step) * 1e-6
    bus = tab["size"] * tab["spb"]
    t_bus = (bus / (tab["bwf"] * _eff(eff_max, bh, gamma, tab["ramp_size"]))
             + tab.get("pipe", 0.0) * bus / (tab["bwf"] * eff_max))   # no column: no tree
    chunk = bus * tab["stream"] / (tab["bwf"] * _eff(eff_max, bh, gamma, tab["size"] / tab["n"]))
    t_size = np.where(tab["stream"] > 0, np.maximum(chunk, bus / (tab["bwf"] * eff_max)), t_bus)
    return lat + t_size


def _stack(tables: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}


def _bounds(layout: Layout, cls: str = "nvlink"):
    lo, hi, x0 = [], [], []
    for name, proto in layout.slots():
        floors = [latency_floor(p, cls) for p in ([proto] if proto else PROTOCOLS)]
        base_low = max(f[0] + f[1] if layout.hop_base else f[0] for f in floors)
        low = {"base_us": base_low, "step_us": max(f[1] for f in floors),
               "eff_max": _LO_EFF, "bytes_half": _LO_LBH, "gamma": _LO_GAMMA}[name]
        lo.append(low); hi.append(_HI[name]); x0.append(max(_P0[name], low))  # noqa: E702
    return np.array(x0), (np.array(lo), np.array(hi))


def fit_nvlink(tables: list[dict], layout: Layout = FULL, n_boot: int = 30,
               cls: str = "nvlink") -> dict[str, Fit]:
    """Per-protocol curves; for ``cls="network"`` the per-hop term counts network hops."""
    tab = _stack(tables)
    if cls == "network":
        tab = tab | {"intra": tab["inter"]}
    # Columns as rows of one array: the bootstrap resamples them once per resample
    # (``fit_curve`` indexes x[..., idx]), not once per residual evaluation.
    keys = list(tab)
    cols = np.stack([tab[k] for k in keys])

    def model(th, x):
        return predict_nvlink(th, dict(zip(keys, x, strict=True)), layout)

    def to_params(th):
        u = unpack(th, layout)
        out = {}
        for j, p in enumerate(PROTOCOLS):
            out |= {f"{p}.base_us": u["base_us"][j], f"{p}.step_us": u["step_us"][j],
                    f"{p}.eff_max": u["eff_max"][j],
                    f"{p}.bytes_half": float(np.exp(u["bytes_half"][j])),
                    f"{p}.gamma": u["gamma"][j]}
        return out

    layout = ramp_layout(layout, tab["proto"])
    x0, bounds = _bounds(layout, cls)
    x0 = best_start(lambda th: model(th, cols), tab["time"], x0, bounds, layout.slots())
    fit = fit_curve(model, cols, tab["time"], x0, bounds, None, to_params, n_boot=n_boot,
               robust=True)
    return split_protocols(fit)


def split_protocols(fit: Fit) -> dict[str, Fit]:
    """One Fit per protocol (``LL`` ...) in the profile's FabricCurve shape."""
    out = {}
    for p in PROTOCOLS:
        keys = {n: f"{p}.{n}" for n in PER_PROTO}
        out[p] = Fit({n: fit.params[k] for n, k in keys.items()}, fit.quality,
                     {n: fit.uncertainty[k] for n, k in keys.items()})
    return out


def with_intra_steps(tabs: list[dict], curves: dict[str, FabricCurve]) -> list[dict]:
    """Intra-domain hops of the multi-node sweeps keep the nvlink fits' per-hop cost."""
    for t in tabs:
        step = np.array([curves.get(f"nvlink.{PROTOCOLS[int(i)]}", FabricCurve()).step_us
                         for i in t["proto"]])
        t["lat0"] = t["lat0"] + t["intra"] * step
    return tabs


def measured_protocols(tables: list[dict]) -> set[str]:
    """The protocols NCCL's model picks at one measured size at least."""
    return {PROTOCOLS[int(i)] for t in tables for i in t["proto"]}


def fit_profile_fabric(profile: Profile, nvlink: list[Sweep], network: list[Sweep],
                       layout: Layout = FULL, n_boot: int = 30) -> dict[str, Fit]:
    """Per link class, one curve per protocol that the class's sweeps measured. A protocol
    no sweep ran gets no curve: its parameters would only sit wherever the optimiser left
    them (the DGX H100 sweep never runs LL128, and an unconstrained LL128 fit reached its
    bounds, +200 us per collective); the tuner then uses NCCL's own constants for it."""
    tabs = [point_table(s, profile) for s in nvlink]
    if len({s.gpus for s in nvlink}) == 1:
        # One GPU count: every point of a protocol has the same hop count, so only
        # base_us + hops x step_us is seen; the split would decide the latency of every
        # other group size (DGX H100: the NVLS fit set step_us to -3.39 us, which removed
        # NCCL's per-hop ring latency from 2- and 4-GPU rings that no sweep measured).
        # Keep NCCL's per-hop constants there (SINGLE: step_us = 0), fit base_us.
        layout = Layout(shared=layout.shared, fixed=SINGLE.fixed)
    per = fit_nvlink(tabs, layout, n_boot)
    seen = measured_protocols(tabs)
    fits = {f"nvlink.{p}": f for p, f in per.items() if p in seen}
    if network:
        curves = {f"nvlink.{p}": FabricCurve(**f.params) for p, f in per.items() if p in seen}
        prof = profile.model_copy(update={"fabric": curves})
        tabs = with_intra_steps([point_table(s, prof) for s in network], curves)
        nodes = {s.nodes for s in network}
        net = fit_nvlink(tabs, NETWORK_NODES if len(nodes) > 1 else NETWORK, n_boot,
                         cls="network")
        seen = measured_protocols(tabs)
        group = network_fit_group(network)
        for f in net.values():
            if group is not None:
                f.params["fit_group"] = group
        fits |= {f"network.{p}": f for p, f in net.items() if p in seen}
    return fits


def ring_on_plateau(simple: Fit, plateau: float) -> Fit:
    """``nvlink.ring.Simple``: the curve the tuner reads for ring Simple inside one NVLS
    node. NCCL runs those rings on its ring graph, whose port efficiency is not the NVLS
    all_reduce's that ``nvlink.Simple`` is fitted on (NCCL picks NVLS from 1 MiB on the
    DGX H100 sweep): the plateau is ``plateau``, the published large-size ring busbw over
    the link (collective_fits.ring_plateau). Those single points have no ramp, so base_us,
    step_us and the ramp shape (bytes_half, gamma) are ``simple``'s, with its quality and
    spread; the plateau is fixed and carries none (as ``collectives.nvlink_ring``)."""
    params = dict(simple.params) | {"eff_max": float(f"{plateau:.5g}")}
    unc = {k: v for k, v in simple.uncertainty.items() if k != "eff_max"}
    return Fit(params, dict(simple.quality), unc)


def network_fit_group(network: list[Sweep]) -> list | None:
    """The reference group of the ``network`` curves (kind, GPUs, nodes, GPUs per node),
    which sets where the tuner reads their ramp on other groups (Tuner.nic_ramp); None for
    the echo two-node group (analytical.FIT_GROUP), as ``CollectiveCurve.fit_group``.

    The ramp reference is the NIC bytes per ring channel, which depend on the GPUs (NICs)
    per node only (analytical.nic_ramp_scale): sweeps of one collective at several node
    counts with the same GPUs per node read it alike, and together they separate the
    per-hop latency (``step_us``, x hops: 2 log2(nodes) for the tree) from the base. The
    reference is the fewest-node group of them. Sweeps of another system, collective or
    number of GPUs per node would leave that reference undefined and are refused."""
    shapes = {(s.system, s.collective, s.gpus_per_node) for s in network}
    if len(shapes) > 1:
        groups = sorted({(s.collective, s.gpus, s.nodes, s.gpus_per_node) for s in network})
        raise ClusterSimError(f"network sweeps of different groups {groups}: the fabric "
                              f"network curve's ramp needs one fit group (one system, one "
                              f"collective, one number of GPUs per node)")
    s = min(network, key=lambda s: s.nodes)
    group = (s.collective, s.gpus, s.nodes, s.gpus_per_node)
    return None if group == FIT_GROUP else list(group)


def best_start(model, y, x0, bounds, slots) -> np.ndarray:
    """The least-squares optimum over the deterministic start grid (_GRID)."""
    best = None
    for gamma, log_bh in _GRID:
        x = np.array([gamma if n == "gamma" else log_bh if n == "bytes_half" else v
                      for (n, _), v in zip(slots, x0, strict=True)])
        r = least_squares(lambda th: np.log(model(th) / y), x, bounds=bounds)
        if best is None or r.cost < best.cost - 1e-9:
            best = r
    return best.x


# A single sweep (one GPU count) cannot separate base_us from step_us: fix the per-hop
# extra at 0 (gamma is shared by ``ramp_layout`` when a protocol has a handful of points).
SINGLE = Layout(fixed=(("step_us", 0.0),))


def sweep_errors(sweep: Sweep, profile: Profile, nvlink_fits: dict | None = None
                 ) -> dict[str, float]:
    """Geomean |error| of one sweep fitted alone and predicted back (``same``), and fitted
    on every other size and predicting the sizes left out (``held_out``). Multi-node
    sweeps fit the network curves with ``nvlink_fits`` (their system's) held fixed."""
    n = len(sweep.data)
    out = {}
    for key, fit_idx, pred_idx in (("same", np.arange(n), np.arange(n)),
                                   ("held_out", np.arange(0, n, 2), np.arange(1, n, 2))):
        fit_tab, pred_tab = point_table(sweep, profile, fit_idx), point_table(sweep, profile,
                                                                              pred_idx)
        if sweep.nodes == 1:
            fits = fit_nvlink([fit_tab], SINGLE, n_boot=1)
            th = _theta(fits, SINGLE)
            pred = predict_nvlink(th, pred_tab, SINGLE)
        else:
            fit_tab, pred_tab = with_intra_steps([fit_tab, pred_tab], nvlink_fits)
            fits = fit_nvlink([fit_tab], NETWORK, n_boot=1, cls="network")
            pred = predict_nvlink(_theta(fits, NETWORK), pred_tab | {"intra": pred_tab["inter"]},
                                  NETWORK)
        meas = pred_tab["time"]
        out[key] = float(np.expm1(np.mean(np.abs(np.log(pred / meas)))))
    return out


def _theta(fits: dict[str, Fit], layout: Layout) -> np.ndarray:
    """Per-protocol Fits back to the parameter vector of ``layout``."""
    th = []
    for name, proto in layout.slots():
        f = fits[proto or PROTOCOLS[0]].params
        v = f[name] + (f["step_us"] if layout.hop_base and name == "base_us" else 0.0)
        th.append(np.log(v) if name == "bytes_half" else v)
    return np.array(th)
