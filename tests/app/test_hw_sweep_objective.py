"""The explorer's Sweep page optimises for energy and shows the energy Pareto front."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ENTRY = str(Path(__file__).resolve().parents[2] / "app" / "explorer.py")
SMALL = {"name": "hw-sweep", "cluster": {"system": "dgx-a100", "nodes": 2},
         "workload": {"model": "megatron-7.5b", "global_batch": 32, "micro_batch": 1,
                      "parallel": {"tp": 4, "pp": 2}, "recompute": "selective"}}


def test_sweep_page_energy_objective():
    at = AppTest.from_file(ENTRY, default_timeout=120)
    at.session_state["scenario"] = copy.deepcopy(SMALL)
    at.session_state["page"] = "Sweep"
    at.run()
    at.multiselect(key="sw_tp").set_value([2, 4, 8])
    at.multiselect(key="sw_pp").set_value([1, 2])
    at.number_input(key="sw_verify").set_value(4)
    radio = at.radio(key="sw_objective")
    radio.set_value(radio.options[2])
    at.button[0].click().run()
    assert not at.exception, at.exception
    df = at.session_state["sweep_df"]
    verified = df[df.des_joules_per_token.notna()]
    assert len(verified) == 4
    assert len(at.get("plotly_chart")) == 4          # heatmap, GPUs, USD/h, J/token fronts
    table = at.dataframe[0].value
    assert table.des_joules_per_token.iloc[0] == verified.des_joules_per_token.min()
