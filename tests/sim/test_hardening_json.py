"""Every --format json output is strict JSON: NaN and infinities become null."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from hw_models.jsonio import clean, dumps
from tests.sim.hardening_helpers import cli


def strict(text: str):
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_clean_turns_non_finite_numbers_into_null():
    data = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": np.float64("nan"),
            "d": np.array([1.0, np.nan]), "e": pd.DataFrame({"x": [1.0, np.nan]}),
            "f": np.int64(3), "g": pd.NA, "h": (2, None)}
    assert clean(data) == {"a": None, "b": [None, None, 1.5], "c": None, "d": [1.0, None],
                           "e": [{"x": 1.0}, {"x": None}], "f": 3, "g": None, "h": [2, None]}
    assert strict(dumps(data))["e"] == [{"x": 1.0}, {"x": None}]


@pytest.mark.parametrize("args", [
    ("catalog", "gpus"), ("catalog", "systems"), ("validate", "nccl"),
    ("run", "scenarios/llama3_405b_run.yaml", "--tflops-per-gpu", "400"),
    ("replay", "tests/data/traces/h100_gpt_1p3b_s4k.json.gz"),
    ("simulate", "--default"),
])
def test_cli_json_is_strict(monkeypatch, capsys, args):
    code, out, _ = cli(monkeypatch, capsys, *args, "--format", "json", limit_s=120)
    assert code == 0
    strict(out)


def test_nan_fields_that_were_nan_are_null(monkeypatch, capsys):
    code, out, _ = cli(monkeypatch, capsys, "catalog", "gpus", "--format", "json")
    rows = strict(out)
    assert any(v is None for row in rows for v in row.values())   # a GPU without fp8 peak


def test_chrome_trace_is_strict(tmp_path, monkeypatch, capsys):
    path = tmp_path / "t.json"
    code, _, _ = cli(monkeypatch, capsys, "simulate", "--default", "--trace", path)
    assert code == 0
    strict(path.read_text())
