"""The Scenario page with a MoE model: the expert-parallel widget changes the result and
an EP size that does not divide the experts is explained inline."""

from __future__ import annotations

import copy

import pytest

pytest.importorskip("streamlit")
from tests.app.test_pages import metric, open_page  # noqa: E402

MOE = {"name": "moe", "cluster": {"system": "dgx-h100", "nodes": 2},
       "workload": {"model": "qwen3-30b-a3b", "global_batch": 64, "micro_batch": 1,
                    "precision": "bf16", "recompute": "full",
                    "parallel": {"tp": 1, "pp": 1, "ep": 8, "zero": 1}}}


def test_scenario_page_expert_parallel_widget():
    at = open_page("Scenario", copy.deepcopy(MOE))
    before = metric(at, "Iteration time (s)")
    at.number_input(key="w_ep").set_value(16).run()
    assert not at.exception
    assert metric(at, "Iteration time (s)") != before
    at.number_input(key="w_ep").set_value(3).run()
    assert not at.exception
    assert any("ep=3 does not divide" in e.value for e in at.error)
