"""Replay takes its source system from the GPU the trace records, says so, and refuses a GPU
the catalog does not model unless --source-system names one."""

from __future__ import annotations

import gzip
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
    ("Tesla V100-SXM2-32GB", 34.1, "v100-32gb"), ("Tesla V100-SXM2-16GB", 16.9, "v100-16gb"),
    ("AMD Radeon Graphics", 68.7, None),                    # no CU count: not enough to tell
    ("Tesla P100-SXM2-16GB", 17.1, None),
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


def _with_device(tmp_path, name: str, units: int) -> Path:
    """The MI250 trace with another GPU written in its deviceProperties."""
    data = json.load(gzip.open(TRACES / "mi250_minitoy_train.json.gz"))
    for d in data["deviceProperties"]:
        d["name"], d["numSms"] = name, units
    f = tmp_path / "other_gpu.json"
    f.write_text(json.dumps(data))
    return f


@pytest.mark.parametrize("device, units", [("Tesla P100-SXM2-16GB", 56),
                                           ("AMD Radeon Graphics", 110)])   # an MI250X GCD
def test_unmodelled_gpu_is_refused(tmp_path, monkeypatch, capsys, device, units):
    code, _, err = cli(monkeypatch, capsys, "replay", _with_device(tmp_path, device, units))
    line = one_error_line(err)
    assert code == 2 and device in line and "--source-system" in line


@pytest.mark.parametrize("trace, system, dtype", [
    ("v100_1rank.json.gz", "dgx-1-v100-32gb", "fp16"),     # V100 has no bf16 units
    ("mi250_minitoy_train.json.gz", "mi250-8", "bf16")])
def test_v100_and_mi250_traces_are_costed_on_their_own_gpu(monkeypatch, capsys, trace, system,
                                                           dtype):
    code, out, err = cli(monkeypatch, capsys, "replay", TRACES / trace, "--format", "json")
    assert code == 0 and f"note: source system {system}" in err
    data = json.loads(out)
    assert data["source_system"] == system
    assert data["whatif"]["dtype"] == dtype         # GEMM dtype when --set dtype is not given


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


def test_replay_page_takes_the_source_from_the_trace():
    pytest.importorskip("streamlit")
    from tests.app.test_pages import TINY_TRACE, open_page
    at = open_page("Trace replay", rp_trace=TINY_TRACE)
    assert not at.error and any("mi250-8" in str(x.value) for x in at.caption)
