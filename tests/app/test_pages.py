"""Every explorer page under streamlit's AppTest: renders, no exception, and changing a
widget changes the number shown. A small scenario keeps each run well under a second."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ENTRY = str(Path(__file__).resolve().parents[2] / "app" / "explorer.py")
SMALL = {"name": "small", "cluster": {"system": "dgx-a100", "nodes": 2},
         "workload": {"model": "megatron-7.5b", "global_batch": 32, "micro_batch": 1,
                      "precision": "bf16", "parallel": {"tp": 4, "pp": 2},
                      "recompute": "selective"}}


def open_page(title: str) -> AppTest:
    at = AppTest.from_file(ENTRY, default_timeout=60)
    at.session_state["scenario"] = copy.deepcopy(SMALL)
    at.session_state["page"] = title
    at.run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_scenario_page_nodes_change_throughput_and_errors_inline():
    at = open_page("Scenario")
    before = metric(at, "Tokens/s")
    assert metric(at, "GPUs") == "16"
    at.number_input(key="w_nodes").set_value(4).run()
    assert not at.exception
    assert metric(at, "GPUs") == "32" and metric(at, "Tokens/s") != before
    # tp=3 does not divide the 32 heads: explained inline, no traceback.
    at.number_input(key="w_tp").set_value(3).run()
    assert not at.exception
    assert any("Invalid scenario" in e.value for e in at.error)


def test_results_page_shows_breakdown_downloads_and_reacts_to_scenario():
    at = open_page("Results")
    t1 = metric(at, "Iteration time (s)")
    assert len(at.get("plotly_chart")) == 3           # breakdown, memory, timeline
    assert len(at.get("download_button")) == 2
    at.session_state["scenario"]["workload"]["recompute"] = "full"
    at.run()
    assert not at.exception and metric(at, "Iteration time (s)") != t1


def test_compare_page_variant_changes_table():
    at = open_page("Compare")
    df = at.dataframe[0].value
    assert "base" in df.columns and "Δ% workload.recompute=full" in df.columns
    # Full recompute redoes the forward pass: the iteration gets slower.
    assert df.loc["iteration_time_s", "Δ% workload.recompute=full"] > 0
    at.text_area(key="cmp_variants").set_value("cluster.nodes=4").run()
    df = at.dataframe[0].value
    assert list(df.columns) == ["base", "cluster.nodes=4", "Δ% cluster.nodes=4"]
    assert df.loc["gpus", "cluster.nodes=4"] == 32


def test_sweep_page_runs_grid_and_loads_plan():
    at = open_page("Sweep")
    at.multiselect(key="sw_tp").set_value([2, 4])
    at.multiselect(key="sw_pp").set_value([1, 2])
    at.button[0].click().run()                      # the form's "Run sweep"
    assert not at.exception
    df = at.session_state["sweep_df"]
    assert sorted(zip(df.tp, df.pp, strict=True)) == [(2, 1), (2, 2), (4, 1), (4, 2)]
    assert len(at.get("plotly_chart")) == 2         # heatmap, Pareto
    at.selectbox(key="sw_pick").set_value(at.selectbox(key="sw_pick").options[-1])
    at.button(key="sw_load").click().run()
    plan = at.session_state["scenario"]["workload"]["parallel"]
    best = df.sort_values("tokens_per_s", ascending=False).iloc[-1]
    assert (plan["tp"], plan["pp"]) == (best.tp, best.pp)


def test_collectives_page_group_size_changes_busbw():
    at = open_page("Collectives")
    at8 = metric(at, "Modelled busbw at 1 GiB (GB/s)")
    assert any("measured" in str(s) for s in at.get("plotly_chart")[0].proto.spec.split('"name"'))
    at.selectbox(key="co_gpus").set_value(16).run()
    assert not at.exception
    assert metric(at, "Modelled busbw at 1 GiB (GB/s)") != at8
