"""Scenario page: the pools of a heterogeneous cluster (docs/hardware.md) and the pool of
each pipeline stage. With pools on, ``cluster.pools`` replaces ``cluster.system/nodes``."""

from __future__ import annotations

import copy
from typing import Any

import plotly.express as px
import streamlit as st

from app import core

DEFAULT_POOLS = [{"name": "hopper", "system": "dgx-h100", "nodes": 1},
                 {"name": "blackwell", "system": "dgx-b200", "nodes": 1}]
FIELDS = (("name", "w_pool_name"), ("system", "w_pool_system"), ("nodes", "w_pool_nodes"))


def _init(data: dict) -> None:
    """The pool list lives in session state (it outlives the page's widgets); widgets are
    restored from it when the page is shown again."""
    cluster = data.get("cluster", {})
    par = data.get("workload", {}).get("parallel", {})
    if "w_pools" not in st.session_state:
        st.session_state["w_pools"] = copy.deepcopy(cluster.get("pools") or DEFAULT_POOLS)
    st.session_state.setdefault("w_use_pools", bool(cluster.get("pools")))
    st.session_state.setdefault("w_stage_pools", ", ".join(par.get("stage_pools") or []))
    st.session_state.setdefault("w_stage_split", par.get("stage_split", "speed"))
    for i, pool in enumerate(st.session_state["w_pools"]):
        for field, key in FIELDS:
            st.session_state.setdefault(f"{key}_{i}", pool[field])


def _forget(i: int) -> None:
    for _, key in FIELDS:
        st.session_state.pop(f"{key}_{i}", None)


def _add() -> None:
    pools = st.session_state["w_pools"]
    pools.append({"name": f"pool{len(pools)}", "system": "dgx-h100", "nodes": 1})
    _forget(len(pools) - 1)


def _remove() -> None:
    pools = st.session_state["w_pools"]
    if len(pools) > 1:
        pools.pop()
        _forget(len(pools))


def editor(data: dict, out: dict) -> bool:
    """Pool widgets; writes ``cluster.pools`` and ``parallel.stage_pools`` into ``out``.
    Returns whether the cluster has pools."""
    _init(data)
    use = st.checkbox("Heterogeneous cluster (pools)", key="w_use_pools",
                      help="named pools of systems; ranks are laid out pool by pool")
    cluster, par = out.setdefault("cluster", {}), out["workload"].setdefault("parallel", {})
    if not use:
        cluster.pop("pools", None)
        par.pop("stage_pools", None)
        par.pop("stage_split", None)
        return False
    pools = st.session_state["w_pools"]
    for i in range(len(pools)):
        c = st.columns([2, 3, 2])
        c[0].text_input("Pool name", key=f"w_pool_name_{i}")
        c[1].selectbox("Pool system", core.system_names(), key=f"w_pool_system_{i}")
        c[2].number_input("Pool nodes", min_value=1, max_value=65536, step=1,
                          key=f"w_pool_nodes_{i}")
        pools[i] = {f: st.session_state[f"{key}_{i}"] for f, key in FIELDS}
    b = st.columns(2)
    b[0].button("Add pool", key="w_pool_add", on_click=_add)
    b[1].button("Remove last pool", key="w_pool_remove", on_click=_remove,
                disabled=len(pools) <= 1)
    st.text_input("Stage pools", key="w_stage_pools",
                  help="the pool of each pipeline stage, comma-separated, in pool order; "
                       "empty: each pool carries (its GPUs / a stage's GPUs) stages")
    st.selectbox("Layer split", ["speed", "even"], key="w_stage_split",
                 help="layers per stage by stage speed, or even")
    cluster["pools"] = [dict(p, nodes=int(p["nodes"])) for p in pools]
    cluster.pop("system", None)
    cluster.pop("nodes", None)
    names = [s.strip() for s in st.session_state["w_stage_pools"].split(",") if s.strip()]
    par["stage_pools"] = names or None
    par["stage_split"] = st.session_state["w_stage_split"]
    return True


def memory_and_pools(data: dict[str, Any]) -> None:
    """Memory per stage against the capacity of the stage's pool, and each pool's stages,
    layers and calibration status (from the simulation itself)."""
    res = core.run(data)
    pools = res.extra.get("pools") or []
    mem = res.memory.assign(stage=range(len(res.memory)))
    parts = [c for c in ("weights_gib", "grads_gib", "optimizer_gib", "activations_gib")
             if c in mem]
    long = mem.melt(id_vars="stage", value_vars=parts, var_name="part", value_name="GiB")
    st.plotly_chart(px.bar(long, x="stage", y="GiB", color="part",
                           title="Memory per rank and pipeline stage"), width="stretch")
    rows = [{"pool": p["name"], "GPU": p["gpu"], "GPUs": p["gpus"],
             "stages": ", ".join(map(str, p["stages"])),
             "layers": ", ".join(map(str, p["layers"])),
             "calibration": p["calibration"]["status"]} for p in pools]
    st.dataframe(rows, width="stretch", hide_index=True)
