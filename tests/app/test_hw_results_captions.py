"""The explorer's Results page states the calibration status, energy and cost."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ENTRY = str(Path(__file__).resolve().parents[2] / "app" / "explorer.py")
BASE = {"name": "hw-captions", "cluster": {"system": "dgx-h100", "nodes": 1},
        "workload": {"model": "megatron-1.7b", "global_batch": 16, "parallel": {"tp": 2, "pp": 2}}}


def captions(scenario: dict) -> str:
    at = AppTest.from_file(ENTRY, default_timeout=60)
    at.session_state["scenario"] = copy.deepcopy(scenario)
    at.session_state["page"] = "Results"
    at.run()
    assert not at.exception, at.exception
    return "\n".join(c.value for c in at.caption)


def test_results_show_calibration_energy_and_cost():
    text = captions(BASE)
    assert "Calibration: fitted (profile h100" in text
    assert "J/token" in text and "per million tokens (rental)" in text


def test_results_say_when_a_part_is_roofline_only():
    sc = copy.deepcopy(BASE) | {"name": "hw-captions-b300"}
    sc["cluster"] = {"system": "dgx-b300", "nodes": 1}
    text = captions(sc)
    assert "Calibration: roofline-assumed (profile gb300" in text
    assert "cluster.price_per_gpu_hour" in text       # no default price: says what to set


def test_results_page_with_pools():
    sc = copy.deepcopy(BASE) | {"name": "hw-captions-pools"}
    sc["cluster"] = {"pools": [{"name": "h", "system": "dgx-h100", "nodes": 1},
                               {"name": "b", "system": "dgx-b200", "nodes": 1}]}
    sc["workload"]["parallel"] = {"tp": 8, "pp": 2}
    text = captions(sc)
    assert "h: fitted (profile h100" in text and "b: fitted (profile b200" in text


def test_inference_page_shows_energy_and_calibration():
    import yaml
    data = yaml.safe_load((Path(ENTRY).parents[1] / "examples/inference_llama3_70b.yaml").read_text())
    data["workload"]["requests"]["count"] = 100
    at = AppTest.from_file(ENTRY, default_timeout=60)
    at.session_state["scenario"] = data
    at.session_state["page"] = "Inference"
    at.run()
    assert not at.exception, at.exception
    text = "\n".join(c.value for c in at.caption)
    assert "kJ per run" in text and "Calibration: fitted (profile h100" in text
