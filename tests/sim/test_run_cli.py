"""``clustersim run``: a small scenario end to end, and bad input -> one line, exit 2."""

import json
import sys

import pytest
import yaml

from sim.cli.main import main

SCENARIO = {
    "cluster": {"system": "dgx-h100", "nodes": 8, "storage": {"checkpoint": "selene-lustre"}},
    "workload": {"model": "llama3-8b", "global_batch": 64, "parallel": {"tp": 8},
                 "checkpoint": {"every_steps": 50, "mode": "sync"}, "data": {"prefetch": 2}},
    "run": {"steps": 3000, "failures": {"gpu": 50.0}, "restart_s": 300, "seed": 1, "samples": 2},
}


def run_cli(tmp_path, monkeypatch, capsys, scenario, *args):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario))
    monkeypatch.setattr(sys, "argv", ["clustersim", "run", str(path), *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code, capsys.readouterr()


def test_run_prints_the_whole_run_figures(tmp_path, monkeypatch, capsys):
    code, out = run_cli(tmp_path, monkeypatch, capsys, SCENARIO, "--step-time", "2", "--format", "json")
    assert code in (0, None)
    res = json.loads(out.out)
    for key in ("run_days", "goodput", "interruptions", "lost_hours", "checkpoint_overhead_pct",
                "best_every_steps"):
        assert key in res
    assert 0 < res["goodput"] < 1 and res["every_steps"] == 50


@pytest.mark.parametrize("path, value, message", [
    (("run", "failures", "gpu"), -1, "run.failures.gpu: Input should be greater than or equal to 0"),
    (("workload", "checkpoint", "every_steps"), 0, "workload.checkpoint.every_steps: must be"),
    (("cluster", "storage", "checkpoint"), {"kind": "parallel_fs", "write_gb_s_aggregate": -5},
     "cluster.storage.checkpoint.write_gb_s_aggregate: Input should be greater than 0"),
])
def test_bad_input_exits_2_with_one_clear_line(tmp_path, monkeypatch, capsys, path, value, message):
    bad = yaml.safe_load(yaml.safe_dump(SCENARIO))
    node = bad
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    code, out = run_cli(tmp_path, monkeypatch, capsys, bad, "--step-time", "2")
    assert code == 2 and message in out.err and "Traceback" not in out.err
