"""Sweep page: a tp x pp grid over the current scenario (or a loaded Parquet), heatmap,
Pareto front and the top plans, with a click-through back to the Scenario page.

The grid is a loop of cached simulate() calls; when the sweep engine (sim.sweep) lands
this page should call it instead and keep the same table columns.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from app import core
from hw_models.errors import ClusterSimError

TITLE = "Sweep"
CHOICES = [1, 2, 4, 8, 16, 32]
METRICS = ["tokens_per_s", "mfu", "iteration_time_s", "memory_peak_gib"]


def run_grid(base: dict, tps: list[int], pps: list[int], on_step=None) -> pd.DataFrame:
    rows, total = [], len(tps) * len(pps)
    for i, (tp, pp) in enumerate((t, p) for t in tps for p in pps):
        row: dict = {"tp": tp, "pp": pp}
        try:
            row |= core.metrics(core.run(core.with_overrides(
                base, [f"workload.parallel.tp={tp}", f"workload.parallel.pp={pp}"])))
        except ClusterSimError as exc:
            row["error"] = str(exc)
        rows.append(row)
        if on_step:
            on_step((i + 1) / total, f"tp={tp} pp={pp}")
    df = pd.DataFrame(rows)
    return df if "error" in df else df.assign(error=None)


def pareto(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Rows not dominated by another (smaller x and larger y are better)."""
    ok = df.dropna(subset=[x, y]).sort_values([x, y], ascending=[True, False])
    front, best = [], float("-inf")
    for idx, val in ok[y].items():
        if val > best:
            front.append(idx)
            best = val
    return ok.loc[front]


def _source() -> pd.DataFrame | None:
    with st.form("sweep_form"):
        c1, c2 = st.columns(2)
        tps = c1.multiselect("tp", CHOICES, default=[1, 2, 4, 8], key="sw_tp")
        pps = c2.multiselect("pp", CHOICES, default=[1, 2, 4, 8], key="sw_pp")
        go = st.form_submit_button("Run sweep")
    upload = st.file_uploader("...or load a sweep Parquet", type=["parquet"])
    if go:
        bar = st.progress(0.0, text="sweeping")
        st.session_state["sweep_df"] = run_grid(core.current(), sorted(tps), sorted(pps),
                                                lambda f, t: bar.progress(f, text=t))
    elif upload is not None:
        st.session_state["sweep_df"] = pd.read_parquet(upload)
    return st.session_state.get("sweep_df")


def _load_plan(top: pd.DataFrame) -> None:
    labels = [f"tp={r.tp} pp={r.pp}" for r in top.itertuples()]
    pick = st.selectbox("Open a plan in the Scenario page", labels, key="sw_pick")
    if st.button("Load plan", key="sw_load") and pick:
        row = top.iloc[labels.index(pick)]
        core.set_current(core.with_overrides(core.current(), [
            f"workload.parallel.tp={int(row.tp)}", f"workload.parallel.pp={int(row.pp)}"]))
        for key in ("w_tp", "w_pp"):          # the Scenario page re-reads the scenario
            st.session_state.pop(key, None)
        st.success(f"Loaded {pick}; open the Scenario page.")


def render() -> None:
    st.title("Sweep")
    df = _source()
    if df is None or df.empty:
        st.info("Run a sweep or load a Parquet.")
        return
    ok = df[df["error"].isna()] if "error" in df else df
    st.caption(f"{len(ok)} feasible of {len(df)} points")
    metric = st.selectbox("Metric", [m for m in METRICS if m in df], key="sw_metric")
    if ok.empty:
        st.warning("No feasible point: " + "; ".join(df["error"].dropna().unique()[:3]))
        return
    heat = ok.pivot_table(index="tp", columns="pp", values=metric)
    st.plotly_chart(px.imshow(heat, text_auto=".3g", aspect="auto", title=f"{metric}: tp x pp"),
                    use_container_width=True)
    front = pareto(ok, "memory_peak_gib", "tokens_per_s")
    fig = px.scatter(ok, x="memory_peak_gib", y="tokens_per_s", hover_data=["tp", "pp"],
                     title="Pareto front: throughput vs memory per GPU")
    fig.add_scatter(x=front.memory_peak_gib, y=front.tokens_per_s, mode="lines+markers",
                    name="Pareto front")
    st.plotly_chart(fig, use_container_width=True)
    top = ok.sort_values("tokens_per_s", ascending=False).head(10)
    st.dataframe(top, use_container_width=True)
    _load_plan(top)
