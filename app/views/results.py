"""Results page: iteration time and its breakdown, memory per stage, pipeline timeline."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from app import core
from sim.result import SimResult

TITLE = "Results"


def iteration_text(res: SimResult) -> str:
    """Iteration time in seconds, with the profile's prediction interval when there is one:
    ``13.700 [13.200, 14.100]``."""
    band = core.iteration_band(res)
    text = f"{res.iteration_time_s:.3f}"
    return f"{text} [{band[0]:.3f}, {band[1]:.3f}]" if band else text


def _metrics(res: SimResult) -> None:
    band = core.iteration_band(res)
    c = st.columns(5)
    # The value alone: a metric box cuts long text, and "13.700 [13.200, 1..." hid the band.
    c[0].metric("Iteration time (s)", f"{res.iteration_time_s:.3f}",
                help="the profile's prediction interval is shown below" if band else
                "the profile gives no prediction interval")
    c[1].metric("MFU", f"{res.mfu:.1%}")
    c[2].metric("HFU", f"{res.hfu:.1%}")
    c[3].metric("Tokens/s", f"{res.tokens_per_s:,.0f}")
    c[4].metric("TFLOP/s per GPU", f"{res.tflops_per_gpu:.1f}")
    if band:
        st.caption(f"Iteration time {iteration_text(res)} s: the value and the profile's "
                   "prediction interval [low, high]")


def calibration_text(res: SimResult) -> str:
    """How the run's time model is calibrated, per pool where the cluster has pools."""
    pools = res.extra.get("pools")
    cals = [(p["name"], p["calibration"]) for p in pools] if pools else \
        [("", res.extra["calibration"])] if "calibration" in res.extra else []
    return "; ".join(f"{name + ': ' if name else ''}{c['status']} (profile {c['profile']}: "
                     f"{c['detail']})" for name, c in cals)


def energy_cost_text(res, unit: str = "iteration") -> str:
    """Energy and cost of a training iteration or a serving run (docs/energy.md)."""
    x = res.extra
    parts = []
    if x.get("energy_j") is not None:
        parts.append(f"energy {x['energy_j'] / 1e3:,.1f} kJ per {unit}, "
                     f"{x['avg_power_w_per_gpu']:,.0f} W per GPU, "
                     f"{x['joules_per_token']:.3g} J/token")
    elif "energy" in x:
        parts.append("energy not computed: " + "; ".join(x["energy"]["not_counted"]))
    if x.get("cost_usd") is not None:
        parts.append(f"${x['cost_usd']:.4g} per {unit}, "
                     f"${x['cost_usd_per_million_tokens']:.3g} per million tokens "
                     f"({x['cost']['mode']})")
    elif "cost" in x:
        parts.append(x["cost"].get("missing", ""))
    return " | ".join(parts)


def _breakdown(res: SimResult) -> None:
    df = pd.DataFrame({"part": list(res.breakdown), "seconds": list(res.breakdown.values())})
    df["share"] = df.seconds / res.iteration_time_s
    fig = px.bar(df, x="seconds", y=["iteration"] * len(df), color="part", orientation="h",
                 title="Breakdown on the critical rank (sums to the iteration time)",
                 hover_data={"share": ":.1%"})
    fig.update_layout(height=260, yaxis_title=None, **core.LEGEND_BELOW)
    st.plotly_chart(fig, width="stretch")


def _memory(res: SimResult) -> None:
    parts = ["weights_gib", "grads_gib", "optimizer_gib", "activations_gib"]
    long = res.memory.melt(id_vars="stage", value_vars=parts, var_name="part", value_name="GiB")
    st.plotly_chart(px.bar(long, x="stage", y="GiB", color="part", title="Memory per pipeline stage"),
                    width="stretch")


def _timeline(res: SimResult) -> None:
    tl = res.timeline[res.timeline.end > res.timeline.start].copy()
    tl["lane"] = "rank " + tl["rank"].astype(str) + " " + tl["stream"]
    tl["start_ms"], tl["dur_ms"] = tl.start * 1e3, (tl.end - tl.start) * 1e3
    fig = px.bar(tl, x="dur_ms", y="lane", base="start_ms", color="category", orientation="h",
                 hover_data=["name"], title="One iteration, ranks of one pipeline (ms)")
    fig.update_yaxes(categoryorder="category descending")
    fig.update_layout(height=max(300, 22 * tl.lane.nunique()), barmode="overlay")
    st.plotly_chart(fig, width="stretch")


def render() -> None:
    st.title("Results")
    data = core.current()
    if (res := core.run_or_error(data)) is None:
        return
    st.caption(f"{res.name}: {res.world_size} GPUs, fidelity {res.fidelity}")
    _metrics(res)
    if text := energy_cost_text(res):
        st.caption(text)
    if text := calibration_text(res):
        st.caption(f"Calibration: {text}")
    _breakdown(res)
    _memory(res)
    _timeline(res)
    downloads(data, res.name)


def downloads(data: dict, stem: str) -> None:
    """The page's two downloads: its simulation as Chrome trace JSON (strict: null, never
    NaN) and its scenario as YAML, named ``stem``.trace.json and ``stem``.yaml."""
    c1, c2 = st.columns(2)
    c1.download_button("Chrome trace (JSON)", core.chrome_trace(data),
                       file_name=f"{stem}.trace.json", mime="application/json")
    c2.download_button("Scenario YAML", core.to_yaml(data), file_name=f"{stem}.yaml",
                       mime="application/x-yaml")
