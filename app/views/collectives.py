"""Collectives page: modelled bus bandwidth vs message size for a system and group size,
against the reference nccl-tests measurements in calibration/reference.

Curves come from sim.network.AnalyticalNetwork.collective_time; busbw follows nccl-tests
(busbw = bus_factor(kind, n) * size / time).
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st
import yaml

from app import core
from calibration.parsers import read_nccl_tests
from hw_models import catalog, profile
from sim.network import AnalyticalNetwork, ClusterLayout
from sim.network.analytical import bus_factor
from workloads.graph import CommGroup

TITLE = "Collectives"
KINDS = ["all_reduce", "all_gather", "reduce_scatter", "all_to_all"]
SIZES = (2.0 ** np.arange(10, 34)).tolist()   # 1 KiB .. 8 GiB, the nccl-tests range


@st.cache_data(show_spinner=False)
def curve(system: str, kind: str, gpus: int, oversubscription: float = 1.0) -> pd.DataFrame:
    spec = catalog.system(system)
    nodes = -(-gpus // spec.gpus_per_node)
    layout = ClusterLayout(spec, nodes, spec.nic_gbps, oversubscription)
    net = AnalyticalNetwork(layout, profile.load(spec.gpu_spec.profile))
    group = CommGroup(tuple(range(gpus)))
    times = [net.collective_time(kind, s, group) for s in SIZES]
    bus = bus_factor(kind, gpus)
    return pd.DataFrame({"size_bytes": SIZES, "time_us": np.array(times) * 1e6,
                         "busbw_gb_s": [bus * s / t / 1e9 for s, t in zip(SIZES, times, strict=True)]})


def references() -> list[dict]:
    return yaml.safe_load(resources.files("app").joinpath("data/collective_refs.yaml").read_text())


@st.cache_data(show_spinner=False)
def reference(rel: str) -> pd.DataFrame:
    path = resources.files("calibration").joinpath("reference", rel)
    if rel.endswith(".log"):
        df = read_nccl_tests(str(path))
        return df.rename(columns={"ip_busbw_gb_s": "busbw_gb_s"})[["size_bytes", "busbw_gb_s"]]
    return pd.read_csv(str(path), comment="#")[["size_bytes", "busbw_gb_s"]]


def render() -> None:
    st.title("Collectives")
    c1, c2, c3, c4 = st.columns(4)
    system = c1.selectbox("System", core.system_names(), index=core.system_names().index("dgx-a100"),
                          key="co_system")
    kind = c2.selectbox("Collective", KINDS, key="co_kind")
    gpus = int(c3.selectbox("GPUs in the group", [2, 4, 8, 16, 32, 64, 128, 256], index=2,
                            key="co_gpus"))
    over = c4.number_input("Oversubscription", min_value=1.0, max_value=16.0, step=0.5, key="co_over")
    model = curve(system, kind, gpus, over).assign(source=f"model: {system} {kind} x{gpus}")
    frames = [model]
    for ref in references():
        if ref["system"] == system and ref["kind"] == kind and ref["gpus"] == gpus:
            frames.append(reference(ref["file"]).assign(source=f"measured: {ref['label']}"))
    df = pd.concat(frames, ignore_index=True)
    fig = px.line(df, x="size_bytes", y="busbw_gb_s", color="source", log_x=True, markers=True,
                  title="Bus bandwidth vs message size")
    fig.update_layout(yaxis_title="busbw (GB/s)", xaxis_title="message size (bytes)")
    st.plotly_chart(fig, use_container_width=True)
    st.metric("Modelled busbw at 1 GiB (GB/s)",
              f"{model.loc[model.size_bytes == 2**30, 'busbw_gb_s'].iloc[0]:.1f}")
    if len(frames) == 1:
        st.caption("No reference measurement for this system, collective and group size.")
    st.dataframe(model[["size_bytes", "time_us", "busbw_gb_s"]], use_container_width=True)
