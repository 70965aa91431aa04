"""Trace replay page: a PyTorch profiler (Kineto) trace replayed on the engine as measured
and under a what-if, through the same function as ``clustersim replay`` (sim.replay and
sim.whatif; docs/replay.md).

Traces: the ones bundled in tests/data/traces (Kineto files and per-rank folders; the
Execution Trace files are not Kineto and are left out), or uploaded files (several files
are one trace, one file per rank).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from app import core
from hw_models import catalog
from hw_models.errors import ClusterSimError

TITLE = "Trace replay"
TRACES = Path(__file__).resolve().parents[2] / "tests" / "data" / "traces"
UPLOAD = "(upload)"
SAME = "(as the target system)"
FROM_TRACE = "(the GPU the trace records)"
DEFAULT = "a100_2rank_rank0_nccl.json.gz"
# Execution Trace (ExecutionTraceObserver) files: not Kineto, replay cannot read them.
_ET = re.compile(r"(?<!_with)_et\.json\.gz$")


def bundled() -> dict[str, Path]:
    """Replayable traces shipped with the repository (name -> file or folder)."""
    if not TRACES.is_dir():
        return {}
    out = {p.name: p for p in sorted(TRACES.glob("*.json.gz")) if not _ET.search(p.name)}
    out |= {p.name: p for p in sorted(TRACES.iterdir())
            if p.is_dir() and any(p.glob("*.json*"))}
    return out


def read(path: Path) -> tuple[tuple[str, bytes], ...]:
    files = sorted(path.glob("*.json*")) if path.is_dir() else [path]
    return tuple((f.name, f.read_bytes()) for f in files)


def whatif_sets(gpu: str, dp: int, bw_scale: float, nic_gbps: float, dtype: str,
                attention_seq: int) -> tuple[str, ...]:
    """The ``--set`` items of the page's what-if (defaults left out)."""
    sets = [f"bw_scale={bw_scale:g}", f"dtype={dtype}", f"attention_seq={attention_seq}"]
    if gpu != SAME:
        sets.append(f"gpu={gpu}")
    if dp:
        sets.append(f"dp={dp}")
    if nic_gbps:
        sets.append(f"nic_gbps={nic_gbps:g}")
    return tuple(sets)


def _source() -> tuple[tuple[str, bytes], ...] | None:
    traces = bundled()
    names = [*traces, UPLOAD]
    pick = st.selectbox("Trace", names, index=names.index(DEFAULT) if DEFAULT in names else 0,
                        key="rp_trace")
    if pick != UPLOAD:
        return read(traces[pick])
    ups = st.file_uploader("Kineto trace (.json / .json.gz; several files = one per rank)",
                           type=["json", "gz"], accept_multiple_files=True, key="rp_upload")
    return tuple((u.name, u.getvalue()) for u in ups) if ups else None


def _controls() -> tuple[str | None, str, tuple[str, ...]]:
    names = core.system_names()
    c = st.columns(4)
    source = c[0].selectbox("Measured on", [FROM_TRACE, *names], key="rp_source",
                            help="the catalog system of the GPU recorded in the trace, or one "
                                 "you pick (needed when the catalog does not model that GPU)")
    source = None if source == FROM_TRACE else source
    target = c[1].selectbox("What-if system", names, index=names.index("dgx-h100"), key="rp_target")
    gpu = c[2].selectbox("GPU override", [SAME, *sorted(catalog.gpus())], key="rp_gpu")
    dtype = c[3].selectbox("dtype of GEMMs", ["bf16", "fp16", "fp8", "fp32"], key="rp_dtype")
    c = st.columns(4)
    dp = int(c[0].number_input("Data parallel (0 = as traced)", 0, 65536, 0, key="rp_dp"))
    bw = c[1].number_input("Bandwidth x", 0.1, 100.0, 1.0, step=0.5, key="rp_bw")
    nic = c[2].number_input("NIC Gb/s (0 = system's)", 0.0, 3200.0, 0.0, step=100.0, key="rp_nic")
    seq = int(c[3].number_input("Attention kv length", 1, 1 << 20, 2048, key="rp_seq"))
    return source, target, whatif_sets(gpu, dp, bw, nic, dtype, seq)


def _headline(d: dict) -> None:
    c = st.columns(4)
    c[0].metric("Measured iteration (ms)", f"{d['measured_iteration_s'] * 1e3:.3f}")
    c[1].metric("Replayed iteration (ms)", f"{d['replayed_iteration_s'] * 1e3:.3f}",
                help="engine replay with the recorded durations; must match the measurement")
    c[2].metric("Replay error", f"{d['replay_error']:+.3%}")
    c[3].metric("What-if iteration (ms)", f"{d['whatif_iteration_s'] * 1e3:.3f}",
                delta=f"{d['whatif_iteration_s'] / d['replayed_iteration_s'] - 1:+.1%}",
                delta_color="inverse")


def breakdown(d: dict) -> pd.DataFrame:
    """Parts of each run's iteration that add up to it: compute kernels (the time any of them
    runs, split by class in proportion to each class's busy time, since kernels on several
    streams overlap), communication not hidden under compute, and GPU idle time.
    Communication hidden under compute takes no time of its own and is not shown."""
    rows = []
    for run, parts in d["breakdown"].items():
        it = d[f"{run}_iteration_s"]
        exposed, idle = parts.get("exposed_comm_s", 0.0), parts.get("gpu_idle_s", 0.0)
        busy = {k: v for k, v in parts.items()
                if k not in ("exposed_comm_s", "gpu_idle_s", "nccl_s") and v > 0}
        scale = max(0.0, it - exposed - idle) / sum(busy.values()) if busy else 0.0
        rows += [{"run": run, "part": k.removesuffix("_s"), "ms": v * scale * 1e3}
                 for k, v in busy.items()]
        rows += [{"run": run, "part": "exposed_comm", "ms": exposed * 1e3},
                 {"run": run, "part": "gpu_idle", "ms": max(0.0, min(idle, it)) * 1e3}]
    return pd.DataFrame(rows)


def kernels(d: dict) -> pd.DataFrame:
    df = pd.DataFrame(d["kernels"]).T.rename_axis("class").reset_index()
    return df


def render() -> None:
    st.title("Trace replay")
    files = _source()
    source, target, sets = _controls()
    if not files:
        st.info("Pick a bundled trace or upload one.")
        return
    try:
        d, chrome = core.replay(files, source, target, sets)
    except ClusterSimError as exc:
        st.error(f"Cannot replay: {core.plain(exc)}")
        return
    st.caption(d["source_note"])
    _headline(d)
    for w in d["warnings"]:
        st.warning(core.plain(w))
    fig = px.bar(breakdown(d), x="ms", y="run", color="part", orientation="h",
                 title="Per iteration: compute kernels by class, exposed communication, GPU idle "
                       "(sums to the iteration)")
    fig.update_layout(height=320, **core.LEGEND_BELOW)
    st.plotly_chart(fig, width="stretch")
    st.subheader("Kernels")
    st.dataframe(kernels(d), width="stretch")
    st.subheader("Ranks and steps")
    st.dataframe(pd.DataFrame(d["ranks"]), width="stretch")
    if d["steps"]:
        st.dataframe(pd.DataFrame(d["steps"]), width="stretch")
    st.download_button("What-if replay (Chrome trace JSON)", chrome,
                       file_name="replay.trace.json", mime="application/json")
