"""Bad input that used to end in a traceback: now one `error:` line and exit 2."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml

from tests.sim.hardening_helpers import cli, one_error_line

ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT / "tests/data/traces"


def refused(monkeypatch, capsys, *args) -> str:
    code, _, err = cli(monkeypatch, capsys, *args)
    line = one_error_line(err)
    assert code == 2, err
    return line


def test_binary_scenario(tmp_path, monkeypatch, capsys):
    f = tmp_path / "s.yaml"
    f.write_bytes(bytes(range(256)) * 8)
    assert "not UTF-8 text" in refused(monkeypatch, capsys, "simulate", f)


def test_directory_as_scenario(tmp_path, monkeypatch, capsys):
    assert "is a directory" in refused(monkeypatch, capsys, "simulate", tmp_path)


def test_empty_scenario(tmp_path, monkeypatch, capsys):
    f = tmp_path / "s.yaml"
    f.write_text("# nothing yet\n")
    assert "is empty" in refused(monkeypatch, capsys, "simulate", f)


@pytest.mark.parametrize("key, value", [
    ("cluster.network.oversubscription", "inf"), ("cluster.network.nic_gbps", "nan"),
    ("sim.speed_scale", ".inf"), ("workload.global_batch", "nan"),
])
def test_non_finite_numbers(monkeypatch, capsys, key, value):
    line = refused(monkeypatch, capsys, "simulate", "--default", "--set", f"{key}={value}")
    assert key in line


def test_nan_step_time(monkeypatch, capsys):
    line = refused(monkeypatch, capsys, "run", "scenarios/llama3_405b_run.yaml", "--step-time", "nan")
    assert "finite" in line


@pytest.mark.parametrize("flag", ["--trace"])
def test_output_path_is_a_directory(tmp_path, monkeypatch, capsys, flag):
    assert "is a directory" in refused(monkeypatch, capsys, "simulate", "--default", flag, tmp_path)


def test_output_path_under_a_file(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = refused(monkeypatch, capsys, "simulate", "--default", "--trace", blocker / "t.json")
    assert "is a file, not a folder" in line


def test_sweep_out_is_a_directory(tmp_path, monkeypatch, capsys):
    line = refused(monkeypatch, capsys, "sweep", "examples/sweep_small.yaml", "--out", tmp_path)
    assert "is a directory" in line and "results.parquet" in line


def test_replay_trace_out_is_a_directory(tmp_path, monkeypatch, capsys):
    line = refused(monkeypatch, capsys, "replay", TRACES / "cpu_gpt_1rank.json.gz",
                   "--trace-out", tmp_path)
    assert "is a directory" in line


def test_trace_with_nothing_to_replay(tmp_path, monkeypatch, capsys):
    data = json.load(gzip.open(TRACES / "v100_1rank.json.gz"))
    data["traceEvents"] = [e for e in data["traceEvents"] if e.get("cat") in (None, "Trace")]
    f = tmp_path / "meta_only.json"
    f.write_text(json.dumps(data))
    line = refused(monkeypatch, capsys, "replay", f, "--source-system", "dgx-v100")
    assert "no CPU ops, GPU kernels or collectives" in line


def test_gpu_trace_without_kernels_replays(tmp_path, monkeypatch, capsys):
    """A Kineto trace of a GPU run whose kernel, memcpy and memset events are missing: the
    host side still replays (a CPU-bound step), no traceback."""
    data = json.load(gzip.open(TRACES / "a100_simple_add_kineto.json.gz"))
    data["traceEvents"] = [e for e in data["traceEvents"]
                           if e.get("cat") not in ("kernel", "gpu_memcpy", "gpu_memset")]
    f = tmp_path / "no_kernels.json"
    f.write_text(json.dumps(data))
    code, out, err = cli(monkeypatch, capsys, "replay", f, "--target-system", "dgx-h100",
                         "--format", "json")
    assert code == 0, err
    assert json.loads(out)["cpu_bound"] is True


@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_app_port_out_of_range(monkeypatch, capsys, port):
    pytest.importorskip("streamlit")
    assert "1-65535" in refused(monkeypatch, capsys, "app", "--headless", "--port", port)


def test_app_port_in_use(monkeypatch, capsys):
    import socket
    pytest.importorskip("streamlit")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        line = refused(monkeypatch, capsys, "app", "--headless", "--host", "127.0.0.1",
                       "--port", str(port))
    assert "cannot listen" in line


def test_overrides_on_a_sweep_file_are_named(tmp_path, monkeypatch, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"plans": "auto", "axes": {"cluster.nodes": [1, 2]}}))
    line = refused(monkeypatch, capsys, "sweep", f, "--out", tmp_path / "o.parquet")
    assert "no 'base' scenario" in line


def test_huge_step_graph_is_refused_before_it_is_built(monkeypatch, capsys):
    # 1.5M sequences on dp 16: 96,000 microbatches per pipeline x 96 layers (it used to hang)
    line = refused(monkeypatch, capsys, "simulate", "--default", "--set",
                   "workload.global_batch=1536000")
    assert "96,000 microbatches per pipeline x 96 layers" in line and "limit 400,000" in line


def test_serving_request_count_is_bounded(monkeypatch, capsys):
    line = refused(monkeypatch, capsys, "simulate", "examples/inference_llama3_70b.yaml",
                   "--set", "workload.requests.count=1000000000")
    assert "workload.requests.count" in line and "1000000" in line


def test_collective_on_too_many_gpus_is_refused(monkeypatch, capsys):
    line = refused(monkeypatch, capsys, "collective", "--nodes", "100000", "--max-bytes", "1K")
    assert "800,000 GPUs" in line and "16,384" in line
