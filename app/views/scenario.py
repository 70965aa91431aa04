"""Scenario page: build the scenario; invalid combinations and memory shown live."""

from __future__ import annotations

from typing import Any

import plotly.express as px
import streamlit as st
import yaml

from app import core
from app.views import pools
from hw_models.errors import ClusterSimError
from workloads.model import presets, resolve

TITLE = "Scenario"
CUSTOM = "(edit below)"
# Widget key -> path in the scenario dict, and the default when the path is absent.
FIELDS: dict[str, tuple[str, Any]] = {
    "w_system": ("cluster.system", "dgx-h100"), "w_nodes": ("cluster.nodes", 1),
    "w_oversub": ("cluster.network.oversubscription", 1.0),
    "w_tp": ("workload.parallel.tp", 1), "w_pp": ("workload.parallel.pp", 1),
    "w_vpp": ("workload.parallel.vpp", 1), "w_schedule": ("workload.parallel.schedule", "1f1b"),
    "w_ep": ("workload.parallel.ep", 1), "w_etp": ("workload.parallel.etp", 1),
    "w_sp": ("workload.parallel.sequence_parallel", False), "w_zero": ("workload.parallel.zero", 0),
    "w_gbs": ("workload.global_batch", 1536), "w_mbs": ("workload.micro_batch", 1),
    "w_precision": ("workload.precision", "bf16"), "w_recompute": ("workload.recompute", "none"),
    "w_fidelity": ("sim.fidelity", "analytical"),
}


def get_path(data: dict, path: str, default: Any = None) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_path(data: dict, path: str, value: Any) -> None:
    *head, leaf = path.split(".")
    for part in head:
        data = data.setdefault(part, {})
    data[leaf] = value


def _init_widgets(data: dict) -> None:
    """Widget state is dropped when a page is not shown; restore it from the scenario."""
    for key, (path, default) in FIELDS.items():
        if key not in st.session_state:
            st.session_state[key] = get_path(data, path, default)
    model = data.get("workload", {}).get("model", "gpt3-175b")
    st.session_state.setdefault("w_model", model if isinstance(model, str) else CUSTOM)


def _model_editor(choice: str, data: dict) -> Any:
    if choice != CUSTOM and not st.checkbox("Edit this model", key="w_edit_model"):
        return choice
    current = data.get("workload", {}).get("model")
    base = current if isinstance(current, dict) else resolve(
        choice if choice != CUSTOM else "gpt3-175b").model_dump(mode="json", exclude={"source"})
    text = st.text_area("Model (YAML, ModelSpec fields)", yaml.safe_dump(base, sort_keys=False),
                        height=220, key="w_model_yaml")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        st.error(f"model YAML: {core.plain(exc)}")
        return base


def _widgets(data: dict) -> dict:
    _init_widgets(data)
    out = core.with_overrides(data, [])
    c1, c2, c3 = st.columns(3)
    with c1:
        st.subheader("Cluster")
        st.selectbox("System", core.system_names(), key="w_system")
        st.number_input("Nodes", min_value=1, max_value=65536, step=1, key="w_nodes")
        st.number_input("Network oversubscription", min_value=1.0, max_value=16.0, step=0.5,
                        key="w_oversub", help="cross-node bandwidth is divided by this")
        st.selectbox("Fidelity", ["analytical", "flow"], key="w_fidelity")
        st.subheader("Pools")
        st.caption("with pools on, they replace the system and nodes above")
        pooled_slot = st.container()
    with c2:
        st.subheader("Model and batch")
        choice = st.selectbox("Model", sorted(presets()) + [CUSTOM], key="w_model")
        model = _model_editor(choice, data)
        st.number_input("Global batch", min_value=1, step=1, key="w_gbs")
        st.number_input("Micro batch", min_value=1, step=1, key="w_mbs")
        st.selectbox("Precision", ["bf16", "fp16", "fp8"], key="w_precision")
        st.selectbox("Recompute", ["none", "selective", "full"], key="w_recompute")
    with c3:
        st.subheader("Parallelism")
        for key, label in (("w_tp", "Tensor parallel (tp)"), ("w_pp", "Pipeline parallel (pp)"),
                           ("w_vpp", "Virtual stages (vpp)"), ("w_ep", "Expert parallel (ep, MoE)"),
                           ("w_etp", "Expert tensor parallel (etp, MoE)")):
            st.number_input(label, min_value=1, step=1, key=key)
        st.selectbox("Schedule", ["1f1b", "interleaved", "gpipe", "zb-h1", "zb-v", "dualpipe",
                                  "dualpipev"], key="w_schedule")
        st.checkbox("Sequence parallel", key="w_sp")
        st.selectbox("ZeRO stage", [0, 1, 2, 3], key="w_zero")
    for key, (path, _) in FIELDS.items():
        set_path(out, path, st.session_state[key])
    set_path(out, "workload.model", model)
    with pooled_slot:
        pools.editor(data, out)
    return out


def memory_chart(data: dict) -> None:
    """Memory per rank (one bar per pipeline stage) against the GPU's capacity."""
    mem, cap, gpu = core.memory_per_stage(data)
    parts = ["weights_gib", "grads_gib", "optimizer_gib", "activations_gib"]
    long = mem.melt(id_vars="stage", value_vars=parts, var_name="part", value_name="GiB")
    fig = px.bar(long, x="stage", y="GiB", color="part", title=f"Memory per rank vs {gpu} capacity")
    fig.add_hline(y=cap, line_dash="dash", line_color="red", annotation_text=f"{cap:.0f} GiB")
    st.plotly_chart(fig, width="stretch")
    worst = mem.total_gib.max()
    (st.success if worst <= cap else st.error)(
        f"peak {worst:.1f} GiB of {cap:.1f} GiB ({worst / cap:.0%})")


def headline(data: dict) -> None:
    res = core.run(data)
    c = st.columns(4)
    c[0].metric("Iteration time (s)", f"{res.iteration_time_s:.3f}")
    c[1].metric("MFU", f"{res.mfu:.1%}")
    c[2].metric("Tokens/s", f"{res.tokens_per_s:,.0f}")
    c[3].metric("GPUs", f"{res.world_size}")


def render() -> None:
    st.title("Scenario")
    top = st.container()            # the headline numbers sit above the widgets
    data = _widgets(core.current())
    core.set_current(data)
    try:
        if data.get("cluster", {}).get("pools"):
            pools.memory_and_pools(data)
        else:
            memory_chart(data)
        with top:
            headline(data)
    except ClusterSimError as exc:
        top.error(f"Invalid scenario: {core.plain(exc)}")
    with st.expander("Scenario YAML"):
        st.code(core.to_yaml(data), language="yaml")
