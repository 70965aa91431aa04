"""Inference page: LLM serving (``workload.kind: inference``) through sim.simulate, which
hands it to sim.simulate_inference, as ``clustersim simulate`` does (docs/inference.md).

The serving scenario is its own dict in session state, separate from the training
scenario of the other pages. The default asks 100 requests so it answers in well under a
second; the request count is a widget. Started with ``clustersim app --scenario FILE`` on
a serving scenario, the page starts from that file: the widgets show its values (a length
distribution its median, or the middle of a uniform range) and its other keys (KV cache,
scheduler limits, router, disaggregation) are kept.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st
import yaml

from app import core
from app.views.results import calibration_text, downloads, energy_cost_text
from workloads.model import presets

TITLE = "Inference"
STATE_KEY = "inference_scenario"
POLICIES = ["vllm", "sarathi", "orca", "static", "disaggregated"]
# Widget key -> path in the inference scenario, and its default (a Llama 3 8B server on
# one DGX H100, docs/inference.md's keys).
FIELDS: dict[str, tuple[str, Any]] = {
    "in_model": ("workload.model", "llama3-8b"), "in_system": ("cluster.system", "dgx-h100"),
    "in_nodes": ("cluster.nodes", 1), "in_precision": ("workload.precision", "fp16"),
    "in_tp": ("workload.parallel.tp", 1), "in_pp": ("workload.parallel.pp", 1),
    "in_replicas": ("workload.replicas", 2),
    "in_policy": ("workload.scheduler.policy", "vllm"),
    "in_count": ("workload.requests.count", 100), "in_rate": ("workload.requests.rate_per_s", 10.0),
    "in_prompt": ("workload.requests.prompt_len", 512),
    "in_output": ("workload.requests.output_len", 64),
    "in_ttft": ("workload.slo.ttft_ms", 500.0), "in_tpot": ("workload.slo.tpot_ms", 50.0),
}
# Lognormal spread of lengths when "lognormal lengths" is on: sigma of log-length, the
# value examples/inference_llama3_70b.yaml uses for prompts.
SIGMA = 0.8
LATENCIES = {"ttft_s": "TTFT", "e2e_s": "end-to-end", "tpot_s": "TPOT"}


def start_file() -> dict[str, Any] | None:
    """The ``clustersim app --scenario FILE`` scenario when it is a serving one."""
    path = os.environ.get(core.SCENARIO_ENV)
    data = yaml.safe_load(Path(path).read_text()) if path else None
    w = data.get("workload") if isinstance(data, dict) else None
    return data if isinstance(w, dict) and w.get("kind") == "inference" else None


def _get(data: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def start_values(base: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Widget values read from a serving scenario (a length distribution shows its
    median, and turns on lognormal lengths), the defaults where it is silent."""
    values, lognormal = {}, False
    for key, (path, default) in FIELDS.items():
        v = _get(base, path)
        if isinstance(v, dict):
            lognormal = lognormal or v.get("dist") == "lognormal"
            v = v.get("median", (v.get("low", 0) + v.get("high", v.get("low", 0))) / 2)
        values[key] = default if v is None else type(default)(v)
    return values, lognormal


def scenario(values: dict[str, Any], lognormal: bool,
             base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The inference scenario dict for the widget values (key -> value, as FIELDS), on
    top of ``base`` (a serving scenario file: its other keys are kept)."""
    data: dict[str, Any] = copy.deepcopy(base) if base else {
        "name": "explorer-serving", "cluster": {}, "workload": {"kind": "inference"}}
    for key, (path, _) in FIELDS.items():
        node = data
        *head, leaf = path.split(".")
        for part in head:
            node = node.setdefault(part, {})
        node[leaf] = values[key]
    req = data["workload"]["requests"]
    req.setdefault("seed", 0)
    if lognormal:
        for k in ("prompt_len", "output_len"):
            req[k] = {"dist": "lognormal", "median": req[k], "sigma": SIGMA, "low": 1}
    return data


def _widgets() -> dict[str, Any]:
    base = start_file()
    values, lognormal0 = start_values(base or {})
    for key in FIELDS:
        st.session_state.setdefault(key, values[key])
    st.session_state.setdefault("in_lognormal", lognormal0)
    c1, c2, c3 = st.columns(3)
    with c1:
        st.subheader("Servers")
        st.selectbox("Model", sorted(presets()), key="in_model")
        st.selectbox("System", core.system_names(), key="in_system")
        st.number_input("Nodes", min_value=1, max_value=4096, step=1, key="in_nodes")
        st.selectbox("Precision", ["fp16", "bf16", "fp8"], key="in_precision")
        st.number_input("Tensor parallel per replica", min_value=1, step=1, key="in_tp")
        st.number_input("Pipeline parallel per replica", min_value=1, step=1, key="in_pp")
        st.number_input("Replicas", min_value=1, step=1, key="in_replicas")
    with c2:
        st.subheader("Requests")
        st.selectbox("Batching policy", POLICIES, key="in_policy")
        st.number_input("Requests", min_value=1, max_value=100_000, step=50, key="in_count")
        st.number_input("Rate (requests/s, Poisson)", min_value=0.1, step=1.0, key="in_rate")
        st.number_input("Prompt tokens", min_value=1, step=64, key="in_prompt")
        st.number_input("Output tokens", min_value=1, step=16, key="in_output")
        lognormal = st.checkbox(f"Lognormal lengths (median as above, sigma {SIGMA})",
                                key="in_lognormal")
    with c3:
        st.subheader("SLOs")
        st.number_input("TTFT SLO (ms)", min_value=1.0, step=50.0, key="in_ttft")
        st.number_input("TPOT SLO (ms)", min_value=1.0, step=5.0, key="in_tpot")
    return scenario({k: st.session_state[k] for k in FIELDS}, lognormal, base)


def _headline(res) -> None:
    m = res.metrics
    c = st.columns(5)
    c[0].metric("TTFT p50 / p99 (ms)", f"{m['ttft_ms']['p50']:.1f} / {m['ttft_ms']['p99']:.1f}")
    c[1].metric("TPOT p50 (ms)", f"{m['tpot_ms']['p50']:.2f}")
    c[2].metric("Throughput (tokens/s)", f"{m['throughput_tokens_per_s']:,.0f}")
    c[3].metric("Goodput (requests/s)", f"{m['goodput_requests_per_s']:.2f}")
    c[4].metric("SLO attainment", f"{m['slo_attainment']:.1%}")
    c = st.columns(5)
    c[0].metric("KV cache peak (GiB/GPU)", f"{m['kv_cache_peak_gib']:.2f}")
    c[1].metric("Preemptions", f"{m['preemptions']}")
    c[2].metric("Requests/s", f"{m['requests_per_s']:.2f}")
    c[3].metric("Iterations", f"{res.extra['iterations']:,}")
    c[4].metric("GPUs", f"{res.world_size}")


def percentiles(metrics: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame({k: metrics[k] for k in ("ttft_ms", "tbt_ms", "tpot_ms", "e2e_ms")}).T


def _histogram(res) -> None:
    col = st.radio("Latency", list(LATENCIES), format_func=LATENCIES.get, horizontal=True,
                   key="in_hist")
    df = res.requests.assign(ms=res.requests[col] * 1e3)
    st.plotly_chart(px.histogram(df, x="ms", nbins=40, title=f"Per-request {LATENCIES[col]} (ms)"),
                    width="stretch")


def _timeline(res, limit: int = 2000) -> None:
    it = res.iterations.head(limit).copy()
    it["kind"] = it.prefill_tokens.map(lambda p: "with prefill" if p else "decode only")
    it["lane"] = "replica " + it.replica.astype(str)
    it["ms"] = (it.end_s - it.start_s) * 1e3
    fig = px.bar(it, x="ms", y="lane", base=it.start_s * 1e3, color="kind", orientation="h",
                 hover_data=["batch", "prefill_tokens"],
                 title=f"Iterations per replica (first {len(it)} of {len(res.iterations)}; x in ms)")
    fig.update_layout(barmode="overlay", height=160 + 30 * it.lane.nunique())
    st.plotly_chart(fig, width="stretch")


def render() -> None:
    st.title("Inference")
    top = st.container()
    data = _widgets()
    st.session_state[STATE_KEY] = copy.deepcopy(data)
    if (res := core.run_or_error(data, top)) is None:
        return
    with top:
        _headline(res)
        if text := energy_cost_text(res, "run"):
            st.caption(text)
        if text := calibration_text(res):
            st.caption(f"Calibration: {text}")
    st.dataframe(percentiles(res.metrics).style.format("{:.2f}"), width="stretch")
    _histogram(res)
    _timeline(res)
    downloads(data, "serving")
