"""Bad input: one clear message, exit code 2."""

import sys
from dataclasses import dataclass

import pytest

from sim.cli.main import main


@dataclass
class Out:
    exit_code: int
    output: str


def run(tmp_path, requests: str):
    p = tmp_path / "s.yaml"
    p.write_text("cluster: {system: dgx-h100}\nworkload:\n  kind: inference\n  model: llama3-8b\n"
                 f"  requests: {requests}\n")
    argv, sys.argv = sys.argv, ["clustersim", "simulate", str(p)]
    code = 0
    try:
        with pytest.raises(SystemExit) as exc:
            main()
        code = exc.value.code
    finally:
        sys.argv = argv
    return Out(code, "")


def test_negative_rate(tmp_path, capsys):
    r = run(tmp_path, "{rate_per_s: -2}")
    assert r.exit_code == 2 and "rate_per_s" in capsys.readouterr().err


def test_prompt_longer_than_context(tmp_path, capsys):
    r = run(tmp_path, "{count: 3, prompt_len: 9000, output_len: 10}")
    assert r.exit_code == 2 and "context of 8192" in capsys.readouterr().err


def test_trace_missing_columns(tmp_path, capsys):
    t = tmp_path / "t.csv"
    t.write_text("arrival_s,prompt_len\n0.0,100\n")
    r = run(tmp_path, f"{{arrival: trace, trace: {t}}}")
    assert r.exit_code == 2 and "missing column(s) output_len" in capsys.readouterr().err


@pytest.mark.parametrize("rows, needle", [
    ("x,100,5", "row 1, arrival_s = 'x' is not a number"),     # was a pandas TypeError traceback
    ("0.0,100.5,5", "prompt_len and output_len are whole numbers of tokens"),  # was truncated
])
def test_trace_values(tmp_path, capsys, rows, needle):
    t = tmp_path / "t.csv"
    t.write_text(f"arrival_s,prompt_len,output_len\n{rows}\n")
    r = run(tmp_path, f"{{arrival: trace, trace: {t}}}")
    err = capsys.readouterr().err
    assert r.exit_code == 2 and needle in err and "Traceback" not in err


def test_trace_is_a_folder(tmp_path, capsys):
    r = run(tmp_path, f"{{arrival: trace, trace: {tmp_path}}}")
    assert r.exit_code == 2 and "is a directory; give a CSV file" in capsys.readouterr().err


def test_trace_runs(tmp_path, capsys):
    t = tmp_path / "t.csv"
    t.write_text("arrival_s,prompt_len,output_len\n0.0,100,5\n0.5,200,3\n")
    r = run(tmp_path, f"{{arrival: trace, trace: {t}}}")
    assert r.exit_code == 0 and "ttft_ms" in capsys.readouterr().out
