"""Bad traces give one clear message (ClusterSimError) or a warning, never a traceback."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw_models.errors import ClusterSimError
from sim.replay import replay
from tests.paths import TRACES
from workloads.traces import kineto

DATA = TRACES
SMALL = json.loads(gzip.open(DATA / "a100_simple_add_kineto.json.gz").read())


def _write(tmp_path: Path, obj, name="t.json") -> Path:
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


@pytest.mark.parametrize("text", ['{"traceEvents": [{"ph": "X", "ts": 1', "not json at all",
                                  '{"nodes": []}', "[]", ""])
def test_corrupt_truncated_foreign(tmp_path, text):
    with pytest.raises(ClusterSimError):
        kineto.load(_write(tmp_path, text))


@pytest.mark.parametrize("text, why", [("not json at all", "lexical error: invalid string"),
                                       ("", "parse error: premature EOF")])
def test_json_error_is_one_line(tmp_path, text, why):
    """The JSON parser draws a caret under the bad text over three lines; the message keeps
    the first, which says what is wrong."""
    with pytest.raises(ClusterSimError) as exc:
        kineto.load(_write(tmp_path, text))
    assert "\n" not in str(exc.value) and why in str(exc.value)


def test_truncated_gzip(tmp_path):
    raw = gzip.compress(json.dumps(SMALL).encode())
    p = tmp_path / "t.json.gz"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ClusterSimError):
        kineto.load(p)


def test_missing_correlation_and_unknown_kernel_warn(tmp_path):
    d = json.loads(json.dumps(SMALL))
    for e in d["traceEvents"]:
        if e.get("cat") == "kernel":
            e["args"].pop("correlation", None)
            e["name"] = "mystery_kernel_v2"
    tr = kineto.load(_write(tmp_path, d))
    assert any("correlation" in w for w in tr.warnings)
    assert any("unknown class" in w for w in tr.warnings)
    assert abs(replay(tr).replay_error) < 0.03


def test_cli_exit_code_2_no_traceback(tmp_path):
    p = _write(tmp_path, '{"traceEvents": [')
    out = subprocess.run([sys.executable, "-m", "sim.cli.main", "replay", str(p)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "error:" in out.stderr


_FIELDS = st.sampled_from(["ts", "dur", "args", "cat", "ph", "name", "pid", "tid"])
_VALUES = st.one_of(st.none(), st.integers(-10**6, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=5), st.lists(st.integers(), max_size=2))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 110), _FIELDS, _VALUES), max_size=6),
       st.integers(0, 3))
def test_fuzz_mutated_traces(tmp_path, mutations, drop_every):
    d = json.loads(json.dumps(SMALL))
    ev = d["traceEvents"]
    for i, key, value in mutations:
        if ev:
            ev[i % len(ev)][key] = value
    if drop_every:
        d["traceEvents"] = [e for k, e in enumerate(ev) if k % (drop_every + 2)]
    p = _write(tmp_path, d, "fuzz.json")
    try:
        replay(kineto.load(p))
    except ClusterSimError:
        pass


# ---- PyTorch Execution Trace and Chakra ---------------------------------------------------
ET_SMALL = json.loads(gzip.open(DATA / "a100_simple_add_et.json.gz").read())


def _load_any(p: Path, et: Path | None = None):
    from workloads.traces.formats import load_trace
    return replay(load_trace(p, et))


@pytest.mark.parametrize("obj", [
    {"schema": "1.1.1", "nodes": []},                                   # no nodes
    {"schema": "1.1.1", "nodes": [{"name": "aten::add", "id": 3}]},    # no ctrl_deps/parent
    {"schema": "1.1.1", "nodes": [{"id": "x", "name": "a", "ctrl_deps": 1}]},
    {"schema": "1.1.1", "nodes": [{"id": 2, "name": "a", "ctrl_deps": 1, "inputs": 5}]},
    {"schema": "1.0.1", "nodes": "not a list"},
])
def test_et_missing_or_malformed_keys(tmp_path, obj):
    with pytest.raises(ClusterSimError, match="execution trace"):
        _load_any(_write(tmp_path, obj))


def test_et_truncated_and_foreign(tmp_path):
    raw = json.dumps(ET_SMALL)
    with pytest.raises(ClusterSimError, match="not valid JSON"):
        _load_any(_write(tmp_path, raw[: len(raw) // 2]))
    kineto_file = _write(tmp_path, SMALL, "k.json")
    with pytest.raises(ClusterSimError, match="not a PyTorch Execution Trace"):
        _load_any(kineto_file, kineto_file)          # --et given a Kineto trace
    et_file = _write(tmp_path, ET_SMALL, "e.json")
    with pytest.raises(ClusterSimError, match="TRACE must be the Kineto trace"):
        _load_any(et_file, et_file)
    with pytest.raises(ClusterSimError, match="share no ops"):  # ET of another run
        other = json.loads(json.dumps(ET_SMALL))
        for n in other["nodes"]:
            n["name"] = "aten::other_" + n["name"]
        _load_any(kineto_file, _write(tmp_path, other, "o.json"))


@pytest.mark.parametrize("args", [["x.et"], ["e.json", "--et", "k.json"], ["bad.json"]])
def test_cli_new_formats_exit_2(tmp_path, args):
    _write(tmp_path, ET_SMALL, "e.json")
    _write(tmp_path, SMALL, "k.json")
    _write(tmp_path, {"schema": "1.1.1", "nodes": [{"id": 1}]}, "bad.json")
    (tmp_path / "x.et").write_bytes(b"\x80\x80\x80")
    from typer.testing import CliRunner

    from sim.cli.main import app
    out = CliRunner().invoke(app, ["replay", *[str(tmp_path / a) if "." in a else a
                                               for a in args]])
    # fail() exits 2 after one "error:" line; an uncaught exception would be out.exception.
    assert out.exit_code == 2 and "error:" in out.output
    assert out.exception is None or isinstance(out.exception, SystemExit)


_ET_FIELDS = st.sampled_from(["id", "name", "parent", "rf_id", "inputs", "input_shapes",
                              "input_types", "outputs", "output_shapes", "tid"])


@settings(max_examples=int(__import__("os").environ.get("FUZZ_N", 20)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 40), _ET_FIELDS, _VALUES), max_size=6),
       st.integers(0, 3), st.booleans())
def test_fuzz_mutated_execution_traces(tmp_path, mutations, drop_every, link):
    d = json.loads(json.dumps(ET_SMALL))
    nodes = d["nodes"]
    for i, key, value in mutations:
        nodes[i % len(nodes)][key] = value
    if drop_every:
        d["nodes"] = [n for k, n in enumerate(nodes) if k % (drop_every + 2)]
    p = _write(tmp_path, d, "fuzz_et.json")
    k = _write(tmp_path, SMALL, "k.json") if link else None
    try:
        _load_any(k, p) if link else _load_any(p)
    except ClusterSimError:
        pass


@settings(max_examples=int(__import__("os").environ.get("FUZZ_N", 15)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
       st.integers(0, 64))
def test_fuzz_corrupted_chakra(tmp_path, flips, cut):
    pytest.importorskip("google.protobuf")
    from workloads.traces import chakra
    from workloads.traces.formats import load_trace
    src = tmp_path / "src"
    if not src.exists():
        chakra.export(load_trace(DATA / "a100_simple_add_et.json.gz").graph, src)
    raw = bytearray((src / "et.0.et").read_bytes())
    for pos, byte in flips:
        raw[pos % len(raw)] = byte
    p = tmp_path / "f.0.et"
    p.write_bytes(bytes(raw[: len(raw) - cut]))
    try:
        replay(load_trace(p))
    except ClusterSimError:
        pass
