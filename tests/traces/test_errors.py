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
from workloads.traces import kineto

DATA = Path(__file__).parent.parent / "data" / "traces"
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
