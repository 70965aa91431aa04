"""The Scenario page edits pools: turn them on, add and remove a pool, name the pool of
each stage, change a pool's system; errors are shown inline, the YAML follows."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
from tests.app.test_pages import SMALL, metric, open_page  # noqa: E402


def scenario(at):
    return at.session_state["scenario"]


def test_scenario_page_edits_pools_and_stage_pools():
    at = open_page("Scenario")
    at.checkbox(key="w_use_pools").check().run()
    assert not at.exception
    cl = scenario(at)["cluster"]
    # default pools: one DGX H100 and one DGX B200 node; tp4 pp2 -> dp 2, 8 GPUs a stage
    assert [p["system"] for p in cl["pools"]] == ["dgx-h100", "dgx-b200"]
    assert "system" not in cl and "nodes" not in cl
    assert metric(at, "GPUs") == "16"
    mixed = metric(at, "Tokens/s")
    table = at.dataframe[0].value
    assert list(table["pool"]) == ["hopper", "blackwell"]
    assert set(table["calibration"]) == {"fitted"}      # b200 has its own profile
    # the B200 pool becomes a second H100 pool: slower
    at.selectbox(key="w_pool_system_1").set_value("dgx-h100").run()
    assert metric(at, "Tokens/s") != mixed
    # a third pool of one node: 24 GPUs do not split into 2 stages of 8 per pool
    at.button(key="w_pool_add").click().run()
    assert not at.exception
    assert len(scenario(at)["cluster"]["pools"]) == 3
    assert any("Invalid scenario" in e.value for e in at.error)
    at.button(key="w_pool_remove").click().run()
    assert len(scenario(at)["cluster"]["pools"]) == 2 and not at.error
    # stage pools out of the pools' order: explained inline
    at.text_input(key="w_stage_pools").input("blackwell, hopper").run()
    assert any("must follow the order" in e.value for e in at.error)
    at.text_input(key="w_stage_pools").input("hopper, blackwell").run()
    assert not at.error
    assert scenario(at)["workload"]["parallel"]["stage_pools"] == ["hopper", "blackwell"]
    # pools at flow fidelity (sim/pool_flows.py)
    at.selectbox(key="w_fidelity").set_value("flow").run()
    assert not at.exception and not at.error
    assert scenario(at)["sim"]["fidelity"] == "flow" and metric(at, "GPUs") == "16"
    # pools off again: the plain system/nodes come back
    at.checkbox(key="w_use_pools").uncheck().run()
    assert "pools" not in scenario(at)["cluster"]
    assert scenario(at)["cluster"]["system"] == SMALL["cluster"]["system"]


def test_pools_of_a_loaded_scenario_are_shown():
    data = {"cluster": {"pools": [{"name": "a", "system": "dgx-h100", "nodes": 1},
                                  {"name": "b", "system": "dgx-a100", "nodes": 1}]},
            "workload": SMALL["workload"]}
    at = open_page("Scenario", data)
    assert at.checkbox(key="w_use_pools").value
    assert at.text_input(key="w_pool_name_1").value == "b"
    assert metric(at, "GPUs") == "16"
