"""Sweep page: a thin caller of the sweep engine (``sim.sweep``, as ``clustersim sweep``)
over the current scenario, or a Parquet that ``clustersim sweep --out`` wrote.

Shows the best throughput per tp x pp, the Pareto fronts the engine's summary defines
(tokens/s vs GPUs, vs USD per hour where the catalog has prices, vs joules per token on
DES-verified rows) and the top plans by the chosen objective (time, cost or energy), any
of which can be loaded back into the Scenario page.
"""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from app import core
from hw_models.errors import ClusterSimError
from sim.sweep import summary
from sim.sweep.evaluate import PLAN_KEYS, scenario_for

TITLE = "Sweep"
CHOICES = [1, 2, 4, 8, 16, 32, 64]
MODES = ["tp x pp (rest as in the scenario)", "plans: auto (tp, pp, vpp, micro batch, recompute, sp, zero)"]
_INT = {"tp", "pp", "dp", "vpp", "micro_batch", "zero", "global_batch"}


OBJECTIVES = {"time (tokens/s)": "time", "cost (USD per million tokens)": "cost",
              "energy (J per token, DES-verified rows)": "energy"}


def sweep_file(base: dict, auto: bool, tps: list[int], pps: list[int], nodes: list[int],
               systems: list[str], objective: str = "time") -> dict[str, Any]:
    """The sweep file (as ``clustersim sweep`` reads it) for the page's choices."""
    w = base.get("workload", {})
    par = w.get("parallel", {})
    plans: Any = "auto" if auto else {
        "tp": sorted(tps) or None, "pp": sorted(pps) or None, "vpp": [par.get("vpp", 1)],
        "micro_batch": [w.get("micro_batch", 1)], "recompute": [w.get("recompute", "none")],
        "sequence_parallel": [bool(par.get("sequence_parallel", False))],
        "zero": [par.get("zero", 0)]}
    axes: dict[str, list] = {}
    if nodes:
        axes["cluster.nodes"] = sorted(nodes)
    if systems:
        axes["cluster.system"] = sorted(systems)
    return {"base": base, "plans": plans, "axes": axes, "top": 10, "objective": objective}


def plan_of(row: pd.Series) -> tuple[dict[str, Any], dict[str, Any]]:
    """(axis overrides, plan) of a result row, with plain Python values. dp is left out:
    it follows from the GPU count, so the Scenario page's node widget keeps working."""
    axis = {k[5:]: _plain(v) for k, v in row.items() if k.startswith("axis.")}
    plan = {}
    for key in PLAN_KEYS:
        v = None if key == "dp" else row.get(key)
        if v is None or (isinstance(v, float) and v != v):
            continue
        plan[key] = int(v) if key in _INT else (
            bool(v) if key == "sequence_parallel" else _plain(v))
    return axis, plan


def _plain(v: Any) -> Any:
    if hasattr(v, "tolist"):
        return v.tolist()
    return v.item() if hasattr(v, "item") else v


def _controls(base: dict) -> None:
    cl = base.get("cluster", {})
    with st.form("sweep_form"):
        mode = st.radio("Plans", MODES, key="sw_mode")
        c1, c2 = st.columns(2)
        tps = c1.multiselect("tp", CHOICES, default=[1, 2, 4, 8], key="sw_tp")
        pps = c2.multiselect("pp", CHOICES, default=[1, 2, 4, 8], key="sw_pp")
        c3, c4, c5 = st.columns(3)
        nodes = c3.multiselect("Nodes (axis)", sorted({1, 2, 4, 8, 16, 32, 64, 128,
                                                       int(cl.get("nodes", 1))}),
                               default=[int(cl.get("nodes", 1))], key="sw_nodes")
        systems = c4.multiselect("Systems (axis)", core.system_names(),
                                 default=[cl.get("system", "dgx-h100")], key="sw_systems")
        verify = c5.number_input("DES on the top K", 0, 20, 0, key="sw_verify",
                                 help="--verify-top: re-run the best K with the full simulator")
        goal = st.radio("Optimise for", list(OBJECTIVES), key="sw_objective", horizontal=True,
                        help="energy ranks the DES-verified rows: set 'DES on the top K'")
        go = st.form_submit_button("Run sweep")
    if go:
        sf = sweep_file(base, mode == MODES[1], tps, pps, nodes, systems, OBJECTIVES[goal])
        st.session_state["sweep_objective"] = OBJECTIVES[goal]
        try:
            frame, _ = core.sweep(sf, int(verify))
        except ClusterSimError as exc:
            st.error(f"Invalid sweep: {core.plain(exc)}")
            return
        st.session_state["sweep_df"], st.session_state["sweep_base"] = frame, base


def _upload() -> None:
    upload = st.file_uploader("...or load a Parquet from `clustersim sweep --out`",
                              type=["parquet"], key="sw_upload")
    if upload is None or st.session_state.get("sweep_upload_id") == upload.file_id:
        return
    frame = pd.read_parquet(io.BytesIO(upload.getvalue()))
    if not {"status", "tp", "pp", "tokens_per_s"} <= set(frame):
        st.error("not a clustersim sweep Parquet (needs status, tp, pp, tokens_per_s columns)")
        return
    st.session_state["sweep_upload_id"] = upload.file_id
    st.session_state["sweep_df"], st.session_state["sweep_base"] = frame, None


def heatmap(ok: pd.DataFrame) -> go.Figure:
    heat = ok.pivot_table(index="tp", columns="pp", values="tokens_per_s", aggfunc="max")
    # tp and pp are plan choices, not quantities: one cell each, labelled by value, not a
    # continuous axis with half-integer ticks.
    heat.index, heat.columns = heat.index.map(str), heat.columns.map(str)
    fig = px.imshow(heat, text_auto=".3s", aspect="auto", labels={"x": "pp", "y": "tp"},
                    title="Best tokens/s per tp x pp (over every other plan field and axis)")
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    st.plotly_chart(fig, width="stretch")
    return fig


def pareto_chart(frame: pd.DataFrame, ok: pd.DataFrame, cost: str, title: str) -> go.Figure:
    """The plans no other plan beats on both lower cost and higher tokens/s, as the front;
    every other feasible plan faint and grey behind it, named as dominated."""
    front = pd.DataFrame(summary.pareto(frame, cost))
    on_front = ok.id.isin(front.id) if len(front) else pd.Series(False, index=ok.index)
    labels = ok.apply(summary.plan_label, axis=1) if len(ok) else pd.Series(dtype=str)
    fig = go.Figure()
    fig.add_scatter(x=ok[cost][~on_front], y=ok.tokens_per_s[~on_front], mode="markers",
                    name="dominated plans", marker={"color": "lightgray", "size": 5},
                    text=labels[~on_front], hoverinfo="text+x+y")
    best = ok[on_front].sort_values(cost)
    fig.add_scatter(x=best[cost], y=best.tokens_per_s, mode="lines+markers", name="Pareto front",
                    marker={"size": 9}, text=labels[on_front].loc[best.index],
                    hoverinfo="text+x+y")
    fig.update_layout(title=title, xaxis_title=cost, yaxis_title="tokens_per_s")
    st.plotly_chart(fig, width="stretch")
    return fig


def _top(frame: pd.DataFrame) -> None:
    objective = st.session_state.get("sweep_objective", "time")
    top = summary.ranked(frame, objective).head(10).reset_index(drop=True)
    top.insert(0, "plan", [summary.plan_label(r) for _, r in top.iterrows()])
    cols = [c for c in ("plan", "gpus", "iteration_time_s", "tokens_per_s", "mfu",
                        "memory_peak_gib", "usd_per_mtoken", "des_iteration_time_s",
                        "des_joules_per_token", "des_cost_usd_per_mtoken", "pool_mix",
                        "joules_per_token") if c in top]
    st.subheader(f"Top plans (by {objective})")
    st.dataframe(top[cols], width="stretch")
    pick = st.selectbox("Open a plan in the Scenario page", top.plan.tolist(), key="sw_pick")
    if st.button("Load plan", key="sw_load") and pick is not None:
        base = st.session_state.get("sweep_base") or core.current()
        axis, plan = plan_of(top.iloc[top.plan.tolist().index(pick)])
        core.set_current(scenario_for(base, axis, plan))
        for key in [k for k in st.session_state if str(k).startswith("w_")]:
            del st.session_state[key]      # the Scenario page re-reads its widgets
        st.success(f"Loaded {pick}; open the Scenario page.")


def render() -> None:
    st.title("Sweep")
    st.caption("Runs the sweep engine (`clustersim sweep`) on the current scenario as base.")
    _controls(core.current())
    _upload()
    frame = st.session_state.get("sweep_df")
    if frame is None or frame.empty:
        st.info("Run a sweep or load a Parquet.")
        return
    ok = frame[frame.status == "ok"]
    rejected = frame[frame.status != "ok"].reason.value_counts()
    st.caption(f"{len(ok)} feasible of {len(frame)} configurations"
               + ("; rejected: " + ", ".join(f"{k} {v}" for k, v in rejected.items())
                  if len(rejected) else ""))
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    st.download_button("Results (Parquet)", buf.getvalue(), file_name="sweep.parquet")
    if ok.empty:
        return
    heatmap(ok)
    pareto_chart(frame, ok, "gpus", "Pareto front: tokens/s vs GPUs")
    if "usd_per_hour" in ok and ok.usd_per_hour.notna().any():
        pareto_chart(frame, ok, "usd_per_hour", "Pareto front: tokens/s vs USD per hour "
                     "(catalog list prices)")
    energy = summary.energy_column(ok)
    if energy is not None:
        sim = ok.assign(j_per_token=energy)[energy.notna()]
        pareto_chart(sim, sim, "j_per_token",
                     "Pareto front: tokens/s vs joules per token (simulated rows)")
    _top(frame)
