"""The Scenario page offers every pipeline schedule (docs/schedules.md): a scenario with a
zero-bubble or DualPipe schedule opens, and switching the schedule reruns it."""

import copy

from tests.app.test_pages import SMALL, open_page

V = copy.deepcopy(SMALL)
V["workload"]["parallel"] = {"tp": 4, "pp": 2, "schedule": "zb-v", "zero": 1}


def test_scenario_page_opens_and_switches_split_backward_schedules():
    at = open_page("Scenario", V)
    assert at.selectbox(key="w_schedule").value == "zb-v"
    at.selectbox(key="w_schedule").set_value("dualpipe").run()
    assert not at.exception
    assert at.session_state["scenario"]["workload"]["parallel"]["schedule"] == "dualpipe"
