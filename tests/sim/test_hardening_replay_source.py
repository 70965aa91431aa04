"""Replay takes its source system from the GPU the trace records, says so, and refuses a GPU
the catalog does not model unless --source-system names one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hw_models import catalog
from hw_models.errors import ClusterSimError
from sim.whatif import NO_DEVICE_SOURCE, source_system_for
from tests.sim.hardening_helpers import cli, one_error_line

TRACES = Path(__file__).resolve().parents[2] / "tests/data/traces"


@pytest.mark.parametrize("device, memory_gb, gpu", [
    ("NVIDIA H100 80GB HBM3", 85.0, "h100-sxm"),            # h100_gpt_1p3b_s4k's deviceProperties
    ("NVIDIA A100-PG509-200", 42.3, "a100-40gb"),           # totalGlobalMem 42297524224 B
    ("NVIDIA A100-SXM4-80GB", None, "a100-80gb"),           # size in the name
    ("AMD Instinct MI300X", 206.0, "mi300x"),
    ("NVIDIA B200", None, "b200"),                          # not GB200
    ("Tesla V100-SXM2-32GB", 34.1, None), ("AMD Radeon Graphics", 68.7, None),
])
def test_device_names_map_to_catalog_gpus(device, memory_gb, gpu):
    assert catalog.gpu_for_device(device, memory_gb) == gpu


def test_source_from_the_recorded_gpu():
    system, note = source_system_for({0: "NVIDIA H100 80GB HBM3"}, {0: 85.0})
    assert system == "dgx-h100" and "recorded on 'NVIDIA H100 80GB HBM3'" in note
    assert source_system_for({0: "NVIDIA H100 80GB HBM3"}, {}, "dgx-b200")[0] == "dgx-b200"
    assert source_system_for({0: "cpu"}, {})[0] == NO_DEVICE_SOURCE


def test_mixed_gpus_need_a_choice():
    with pytest.raises(ClusterSimError, match="different GPUs"):
        source_system_for({0: "NVIDIA H100 80GB HBM3", 1: "NVIDIA B200"}, {})


@pytest.mark.parametrize("trace, device", [("v100_1rank.json.gz", "Tesla V100-SXM2-32GB"),
                                           ("mi250_minitoy_train.json.gz", "AMD Radeon Graphics")])
def test_unmodelled_gpu_is_refused(monkeypatch, capsys, trace, device):
    code, _, err = cli(monkeypatch, capsys, "replay", TRACES / trace)
    line = one_error_line(err)
    assert code == 2 and device in line and "--source-system" in line


def test_recorded_gpu_is_used_and_said(monkeypatch, capsys):
    code, out, err = cli(monkeypatch, capsys, "replay", TRACES / "h100_gpt_1p3b_s4k.json.gz",
                         "--format", "json")
    assert code == 0 and "note: source system dgx-h100" in err
    data = json.loads(out)
    assert data["source_system"] == "dgx-h100" and data["whatif"]["source_system"] == "dgx-h100"


def test_source_system_flag_overrides(monkeypatch, capsys):
    code, out, err = cli(monkeypatch, capsys, "replay", TRACES / "mi250_minitoy_train.json.gz",
                         "--source-system", "mi300x-8", "--format", "json")
    assert code == 0 and json.loads(out)["source_system"] == "mi300x-8"
    assert "(--source-system)" in err


def test_replay_page_refuses_an_unmodelled_gpu_by_default():
    pytest.importorskip("streamlit")
    from tests.app.test_pages import TINY_TRACE, open_page
    at = open_page("Trace replay", rp_trace=TINY_TRACE)
    assert any("AMD Radeon Graphics" in e.value for e in at.error)
