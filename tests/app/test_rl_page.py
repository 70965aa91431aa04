"""The RL step page under streamlit's AppTest: renders, the Gantt has one lane per pool,
placement and off-policy widgets change the step, bad input is explained inline."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

from tests.app.test_explorer_fixes import unescape  # noqa: E402
from tests.app.test_pages import metric, open_page  # noqa: E402


def test_rl_page_gantt_per_pool_and_whatifs():
    at = open_page("RL step")
    colocated = float(metric(at, "Step time (s)"))
    assert metric(at, "Weight sync (s)") and len(at.get("plotly_chart")) == 1
    assert set(at.dataframe[0].value.pool) == {"all"}
    at.checkbox(key="rl_colocated").set_value(False).run()      # 4 rollout + 4 train GPUs
    assert not at.exception
    assert set(at.dataframe[0].value.pool) == {"rollout", "train"}
    on = float(metric(at, "Step time (s)"))
    assert on != colocated
    at.number_input(key="rl_off_policy").set_value(1).run()
    assert not at.exception and float(metric(at, "Step time (s)")) < on
    at.number_input(key="rl_rollout_gpus").set_value(3).run()    # not a divisor of a node
    assert not at.exception and "rollout_gpus 3" in unescape(at.error[0].value)  # as rendered


def test_rl_page_whatif_runs_through_the_sweep_engine():
    at = open_page("RL step")
    at.button(key="rl_whatif").click().run()
    assert not at.exception
    table = at.dataframe[-1].value
    assert len(table) == 4
    # colocated + off-policy 1 cannot overlap on time-shared GPUs: rejected, with the reason
    assert (table.status == "ok").sum() == 3
