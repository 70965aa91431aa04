"""Every bad-input path of the CLI: one clear message, exit code 2, no traceback."""

import json
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "sim.cli.main"]


def clustersim(*args, cwd=None):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


GOOD = """
name: t
cluster: {system: dgx-a100, nodes: 2}
workload: {model: megatron-7.5b, global_batch: 32, parallel: {tp: 4, pp: 2}, recompute: selective}
"""


def test_simulate_json_contract(tmp_path):
    out = clustersim("simulate", write(tmp_path, GOOD), "--format", "json",
                     "--trace", str(tmp_path / "t.json"))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    for key in ("iteration_time_s", "tokens_per_s", "tflops_per_gpu", "mfu", "hfu",
                "memory_peak_gib", "breakdown", "fidelity"):
        assert key in data
    trace = json.loads((tmp_path / "t.json").read_text())
    assert any(e["ph"] == "X" for e in trace["traceEvents"])


@pytest.mark.parametrize("text,override,needle", [
    ("cluster: [1, 2\n", None, "malformed YAML"),
    (GOOD.replace("dgx-a100", "dgx-z9"), None, "unknown system 'dgx-z9'; allowed:"),
    (GOOD.replace("megatron-7.5b", "gpt-7"), None, "unknown model 'gpt-7'; allowed:"),
    (GOOD, "workload.parallel.tp=3", "tp*pp = 3*2 = 6 does not divide the 16 GPUs"),
    (GOOD, "workload.parallel.tp=-1", "workload.parallel.tp"),
    (GOOD.replace("tp: 4", "tp: 2"), "workload.parallel.pp=8", "does not divide the model's 36 layers"),
    (GOOD, "workload.global_batch=33", "global_batch=33 is not a multiple"),
    (GOOD, "workload.colour=red", "workload.colour"),
    (GOOD, "workload.precision=fp4", "workload.precision"),
    (GOOD, "tp4", "expected KEY=VALUE"),
    ("cluster: {system: dgx-a100, nodes: 1}\nworkload: {model: gpt3-175b, global_batch: 8,"
     " parallel: {tp: 8, pp: 1}}\n", None, "plan does not fit"),
    ("base: {cluster: {system: dgx-a100}}\naxes: {workload.parallel.tp: [1, 2]}\n", None,
     "is a sweep file (it has 'base'), not a scenario; run it with `clustersim sweep"),
])
def test_bad_input_exits_2(tmp_path, text, override, needle):
    args = ["simulate", write(tmp_path, text)] + (["--set", override] if override else [])
    out = clustersim(*args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert needle in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_file_and_unknown_catalog():
    out = clustersim("simulate", "/nonexistent.yaml")
    assert out.returncode == 2 and "does not exist" in out.stderr
    out = clustersim("catalog", "widgets")
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_catalog_lists_presets():
    out = clustersim("catalog", "models", "--format", "json")
    names = {r["model"] for r in json.loads(out.stdout)}
    assert {"gpt3-175b", "llama3-405b", "megatron-1t"} <= names
    out = clustersim("catalog", "systems", "--format", "json")
    assert {r["system"] for r in json.loads(out.stdout)} >= {
        "dgx-a100", "dgx-h100", "dgx-h200", "dgx-b200", "gb200-nvl72", "mi300x-8"}
