"""A few hundred mutated traces, logs, CSVs and YAML files (benchmarks/fuzz_parsers.py runs
10,000+): each must be accepted or refused with one ClusterSimError, never crash or hang."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("fuzz_parsers", ROOT / "benchmarks/fuzz_parsers.py")
fuzz = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fuzz)


@pytest.mark.parametrize("seed", [11, 12])
def test_mutated_inputs_never_crash(seed):
    res = fuzz.run(175, seed=seed, quiet=True)
    assert sum(r["cases"] for r in res.values()) == 175
    crashes = {t: r["crash_kinds"] for t, r in res.items() if r["crashes"] or r["hangs"]}
    assert not crashes, crashes
    # the mutations reach both outcomes: some inputs still parse, others are refused
    assert sum(r["accepted"] for r in res.values()) > 0 and sum(r["refused"] for r in res.values()) > 0


def test_mutations_change_the_input():
    rng = random.Random(0)
    text = "a b c\nd e f\n"
    assert any(fuzz.mutate_lines(rng, text) != text for _ in range(5))
    doc = {"traceEvents": [{"ph": "X", "ts": 1, "dur": 2}]}
    assert any(fuzz.mutate_json(rng, doc) != fuzz.json.dumps(doc).encode() for _ in range(5))
