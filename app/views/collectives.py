"""Collectives page: bus bandwidth vs message size from the fabric collective model (the
algorithms of sim/network/collectives, chosen per size by its tuner: the same code as
``clustersim collective``), overlaid with the reference nccl-tests measurements that
``clustersim validate nccl`` compares against (calibration.validate_nccl).

busbw follows nccl-tests: busbw = algbw * bus_factor(op, n).
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from app import core
from calibration.validate_nccl import check_sweeps, geomean_abs_error, reference_sweeps
from hw_models import catalog
from hw_models.errors import ClusterSimError
from sim.network.collectives import ALGORITHMS
from sim.network.collectives.tuner import PROTOCOLS
from sim.network.nccl_tests import OPS

TITLE = "Collectives"
AUTO = "auto (tuner)"
MIN_BYTES, MAX_BYTES = 8, 8 << 30          # nccl-tests' usual -b 8 -e 8G


def references(system: str, op: str, gpus: int) -> list[tuple[str, pd.DataFrame]]:
    """Reference sweeps measured on this system's node type, op and group size."""
    from calibration.fit_p2p import p2p_sweeps
    return [(s.name, s.data) for s in reference_sweeps() + check_sweeps()
            if op == s.collective and (s.system == system or system in s.also_on)
            and s.gpus == gpus] + [(s.name, s.data) for s in p2p_sweeps()
                                   if op == "sendrecv" and s.system == system and gpus == 2]


def _group_sizes(world: int) -> list[int]:
    sizes = [2 ** k for k in range(1, 20) if 2 ** k <= world]
    return sizes + ([world] if world not in sizes else [])


def _controls() -> tuple:
    names = core.system_names()
    c = st.columns(6)
    system = c[0].selectbox("System", names, index=names.index("dgx-a100"), key="co_system")
    nodes = int(c[1].number_input("Nodes", min_value=1, max_value=1024, value=1, key="co_nodes"))
    world = nodes * catalog.system(system).gpus_per_node
    sizes = _group_sizes(world)
    gpus = int(c[2].selectbox("GPUs in the group", sizes, index=len(sizes) - 1, key="co_gpus"))
    op = c[3].selectbox("Collective", [o for o in OPS if o != "sendrecv" or gpus == 2], key="co_op")
    algos = [AUTO] + sorted(a.name for a in ALGORITHMS.values() if op in a.kinds)
    algo = c[4].selectbox("Algorithm", algos, key="co_algo")
    proto = c[5].selectbox("Protocol", [AUTO, *PROTOCOLS], key="co_proto")
    return (system, nodes, gpus, op, None if algo == AUTO else algo,
            None if proto == AUTO else proto)


def _fit(model: pd.DataFrame, refs: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """Geometric-mean |error| of the model against each reference on their common sizes."""
    rows = []
    for name, ref in refs:
        both = ref.merge(model, on="size_bytes", suffixes=("_meas", "_model"))
        # nccl-tests prints busbw 0.00 below its resolution at the smallest sizes.
        both = both[(both.busbw_gb_s_meas > 0) & (both.busbw_gb_s_model > 0)]
        if len(both):
            rows.append({"reference": name, "sizes": len(both), "geomean_abs_err_pct": round(
                100 * geomean_abs_error(both.busbw_gb_s_model, both.busbw_gb_s_meas), 1)})
    return pd.DataFrame(rows)


def render() -> None:
    st.title("Collectives")
    system, nodes, gpus, op, algo, proto = _controls()
    try:
        model = core.collective(system, nodes, gpus, op, algo, proto, MIN_BYTES, MAX_BYTES)
    except ClusterSimError as exc:
        st.error(core.plain(exc))
        return
    label = f"model: {system} {op} x{gpus} ({algo or 'auto'}/{proto or 'auto'})"
    refs = references(system, op, gpus)
    frames = [model.assign(source=label)] + [
        r[["size_bytes", "busbw_gb_s"]].assign(source=f"measured: {n}") for n, r in refs]
    fig = px.line(pd.concat(frames, ignore_index=True), x="size_bytes", y="busbw_gb_s",
                  color="source", log_x=True, markers=True, title="Bus bandwidth vs message size")
    fig.update_layout(yaxis_title="busbw (GB/s)", xaxis_title="message size (bytes)")
    st.plotly_chart(fig, width="stretch")
    at_1g = model.loc[model.size_bytes == 2**30, "busbw_gb_s"]
    st.metric("Modelled busbw at 1 GiB (GB/s)", f"{at_1g.iloc[0]:.1f}" if len(at_1g) else "n/a")
    if refs:
        st.caption("The built-in profiles were fitted to these measurements (calibration/"
                   "build_profiles.py), so the overlay shows fit quality, not independent "
                   "validation; measured runs used NCCL's own algorithm choice.")
        st.dataframe(_fit(model, refs), width="stretch")
    else:
        st.caption("No reference measurement for this system, collective and group size "
                   "(references: all_reduce on dgx-h100 x8, dgx-a100 x2/4/8/16).")
    st.dataframe(model, width="stretch")
