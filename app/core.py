"""Cached calls into the simulator, and the current scenario kept in session state.

Every function here only calls the simulator's public API (the same functions the CLI
calls); each is wrapped in ``st.cache_data``, keyed by its arguments (a scenario dict,
a sweep dict, a collective's settings, a trace's bytes), so a repeated question answers
from memory instead of re-simulating. The engines are module globals so tests can count
how often the cache lets them run.
"""

from __future__ import annotations

import copy
import math
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
import yaml

from hw_models import catalog
from hw_models.errors import ClusterSimError
from hw_models.jsonio import dumps
from sim import scenario as scenario_mod
from sim.network.nccl_tests import sweep as collective_sweep
from sim.replay_report import report as replay_run
from sim.result import SimResult
from sim.setup import resolve_setup
from sim.simulate import simulate
from sim.sweep import run as sweep_run
from sim.sweep import spec as sweep_spec
from sim.sweep.executors import InProcess
from workloads import memory

STATE_KEY = "scenario"
# `clustersim app --scenario FILE` passes the starting scenario through this variable.
SCENARIO_ENV = "CLUSTERSIM_APP_SCENARIO"
# Closed-form configurations per chunk of an explorer sweep: small enough for the
# progress bar to move, large enough that chunk overhead stays negligible.
SWEEP_CHUNK = 64


def current() -> dict[str, Any]:
    """The scenario being explored (a plain dict, as in a scenario YAML)."""
    if STATE_KEY not in st.session_state:
        path = os.environ.get(SCENARIO_ENV)
        start = yaml.safe_load(Path(path).read_text()) if path else scenario_mod.DEFAULT_SCENARIO
        st.session_state[STATE_KEY] = copy.deepcopy(start)
    return st.session_state[STATE_KEY]


def set_current(data: dict[str, Any]) -> None:
    st.session_state[STATE_KEY] = copy.deepcopy(data)


def with_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of ``data`` with ``key.path=value`` overrides (the CLI's --set syntax)."""
    return scenario_mod.apply_overrides(copy.deepcopy(data), overrides)


@st.cache_data(max_entries=256, show_spinner="simulating...")
def run(data: dict[str, Any]) -> Any:
    """simulate() of a scenario dict (a SimResult, or an InferenceResult for
    ``workload.kind: inference``); raises ClusterSimError for invalid input."""
    return simulate(scenario_mod.parse(data, "explorer scenario"))


def run_or_error(data: dict[str, Any], where: Any = st) -> Any | None:
    """run(data), or None after showing its one-line error in ``where`` (a container)."""
    try:
        return run(data)
    except ClusterSimError as exc:
        where.error(f"Invalid scenario: {plain(exc)}")
        return None


@st.cache_data(max_entries=16, show_spinner=False)
def chrome_trace(data: dict[str, Any]) -> str:
    """The simulated iteration as Chrome/Perfetto trace JSON text (for downloads)."""
    return dumps(run(data).to_chrome_trace())


@st.cache_data(max_entries=256, show_spinner=False)
def memory_per_stage(data: dict[str, Any]) -> tuple[pd.DataFrame, float, str]:
    """Per-stage memory (GiB) as the simulator's memory model gives it, the GPU's
    capacity in GiB and the GPU name. Cheap: no simulation."""
    setup = resolve_setup(scenario_mod.parse(data, "explorer scenario"))
    stages = memory.memory_per_stage(setup.model, setup.plan, setup.options.grad_bytes,
                                     setup.options.attention == "flash",
                                     param_bytes=setup.options.param_bytes,
                                     offload=setup.options.offload,
                                     optimizer_kind=setup.options.optimizer,
                                     moment_bytes=setup.options.adam_moment_bytes)
    return pd.DataFrame([m.gib() for m in stages]), setup.gpu.hbm_bytes / 2**30, setup.gpu.name


class _Reporting(InProcess):
    """The sweep engine's in-process executor, reporting finished configurations."""

    def __init__(self, total: int, on_step: Callable[[float, str], None] | None):
        self.total, self.done, self.on_step = max(total, 1), 0, on_step

    def map(self, fn, args):
        for i, out in super().map(fn, args):
            self.done += len(out) if isinstance(out, list) else 1
            if self.on_step:
                self.on_step(min(self.done / self.total, 1.0), f"{self.done} of {self.total}")
            yield i, out


@st.cache_data(max_entries=32, show_spinner=False)
def sweep(sweep_file: dict[str, Any], verify_top: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``clustersim sweep`` on a sweep dict (base, plans, axes, top), in this process, with
    a progress bar over the closed-form stage: the result frame (as in the Parquet) and
    the summary; ``verify_top`` is ``--verify-top``. The bar is created here because a
    cached function may only draw into elements it created (streamlit replays them)."""
    sw = sweep_spec.parse(sweep_file, "explorer sweep")
    configs = sweep_run.configurations(sw)
    bar = st.progress(0.0, text=f"closed form over {len(configs)} configurations")
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "sweep.parquet")
        opts = sweep_run.Options(out=out, progress=False, chunk_size=SWEEP_CHUNK,
                                 verify_top=verify_top)
        summary = sweep_run.run(sw, opts, _Reporting(len(configs),
                                                     lambda f, t: bar.progress(f, text=t)))
        frame = pd.read_parquet(out)
    bar.progress(1.0, text=f"{summary['evaluated']} configurations, {summary['feasible']} "
                           f"feasible, in {summary['wall_s']:.2f} s")
    return frame, summary


@st.cache_data(max_entries=128, show_spinner=False)
def collective(system: str, nodes: int, gpus: int, op: str, algo: str | None,
               proto: str | None, min_bytes: int, max_bytes: int) -> pd.DataFrame:
    """``clustersim collective``: the fabric model's nccl-tests look-alike."""
    return collective_sweep(system, nodes, gpus, op, algo, proto, min_bytes, max_bytes)


@st.cache_data(max_entries=16, show_spinner="replaying...")
def replay(files: tuple[tuple[str, bytes], ...], source: str | None, target: str | None,
           sets: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    """``clustersim replay`` on a trace given as (file name, bytes) pairs: one file, or
    several (one per rank, replayed as a folder). Returns the command's JSON summary and
    the what-if replay as Chrome trace JSON text."""
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "trace", Path(tmp) / "replay.trace.json"
        folder.mkdir()
        for name, data in files:
            (folder / Path(name).name).write_bytes(data)
        path = folder if len(files) > 1 else folder / Path(files[0][0]).name
        data = replay_run(path, source, target, list(sets), out)
        return data, out.read_text()


# Legend in a row under the plot: a short bar chart with a legend on the side shows only the
# entries that fit its height (one, for a 220 px breakdown bar).
LEGEND_BELOW = {"legend": {"orientation": "h", "yanchor": "top", "y": -0.35, "x": 0,
                           "title": {"text": ""}}}

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-!|~<>$])")


def plain(text: object) -> str:
    """``text`` shown as written in st.error/st.warning, which render Markdown: an error
    saying ``tp*pp = 3*8`` must not turn into italics (nor ``$`` into LaTeX)."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def number(x: float) -> str:
    """A number for a table: thousands separators, 4 significant digits, no exponent in
    the everyday range (445,000 rather than 4.45e+05); '' for a missing one."""
    if x is None or x != x:
        return ""
    if x == 0 or 1e-3 <= abs(x) < 1e15:
        digits = max(0, 3 - int(math.floor(math.log10(abs(x))))) if x else 0
        return f"{x:,.{digits}f}"
    return f"{x:.4g}"


def metrics(res: SimResult) -> dict[str, float]:
    """The headline numbers of a result, flat (for tables and comparisons)."""
    out = {"iteration_time_s": res.iteration_time_s, "tokens_per_s": res.tokens_per_s,
           "tflops_per_gpu": res.tflops_per_gpu, "mfu": res.mfu, "hfu": res.hfu,
           "memory_peak_gib": res.memory_peak_gib, "gpus": float(res.world_size)}
    out |= {f"{k}_s": v for k, v in res.breakdown.items()}
    return out


def iteration_band(res: SimResult) -> tuple[float, float] | None:
    """The profile's prediction interval of the iteration time, when simulate() gave one."""
    band = res.band or {}
    return band.get("iteration_s") or band.get("iteration_time_s")


def to_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)


def system_names() -> list[str]:
    return sorted(catalog.systems())
