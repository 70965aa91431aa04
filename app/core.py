"""Cached calls into the simulator, and the current scenario kept in session state.

Every function here only calls the simulator's public API; the cache is keyed by the
scenario dict (``st.cache_data`` hashes its arguments), so a repeated scenario answers
from memory instead of re-simulating.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
import yaml

from hw_models import catalog
from sim import scenario as scenario_mod
from sim.result import SimResult
from sim.simulate import resolve_setup, simulate
from workloads import memory

STATE_KEY = "scenario"
# `clustersim app --scenario FILE` passes the starting scenario through this variable.
SCENARIO_ENV = "CLUSTERSIM_APP_SCENARIO"


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
def run(data: dict[str, Any]) -> SimResult:
    """simulate() of a scenario dict; raises ClusterSimError for invalid input."""
    return simulate(scenario_mod.parse(data, "explorer scenario"))


@st.cache_data(max_entries=256, show_spinner=False)
def memory_per_stage(data: dict[str, Any]) -> tuple[pd.DataFrame, float, str]:
    """Per-stage memory (GiB) as the simulator's memory model gives it, the GPU's
    capacity in GiB and the GPU name. Cheap: no simulation."""
    setup = resolve_setup(scenario_mod.parse(data, "explorer scenario"))
    stages = memory.memory_per_stage(setup.model, setup.plan, setup.options.grad_bytes,
                                     setup.options.attention == "flash")
    return pd.DataFrame([m.gib() for m in stages]), setup.gpu.hbm_bytes / 2**30, setup.gpu.name


def metrics(res: SimResult) -> dict[str, float]:
    """The headline numbers of a result, flat (for tables and comparisons)."""
    out = {"iteration_time_s": res.iteration_time_s, "tokens_per_s": res.tokens_per_s,
           "tflops_per_gpu": res.tflops_per_gpu, "mfu": res.mfu, "hfu": res.hfu,
           "memory_peak_gib": res.memory_peak_gib, "gpus": float(res.world_size)}
    out |= {f"{k}_s": v for k, v in res.breakdown.items()}
    return out


def to_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)


def system_names() -> list[str]:
    return sorted(catalog.systems())
