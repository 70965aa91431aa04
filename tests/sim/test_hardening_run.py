"""Whole-run simulation never hangs: impossible runs get one line and exit 2, quickly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from hw_models.errors import ClusterSimError
from sim import reliability
from sim.reliability import RunModel, simulate_run
from sim.run_bounds import expected_events
from tests.sim.hardening_helpers import cli, one_error_line

SCENARIO = {
    "cluster": {"system": "dgx-h100", "nodes": 16},
    "workload": {"model": "gpt3-175b", "global_batch": 1536, "parallel": {"tp": 8, "pp": 8}},
    "run": {"tokens": 3.0e11, "failures": {"gpu": 1.0e9}},
}


def write(tmp_path, data) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_failures_faster_than_restart_is_refused(tmp_path, monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "run", write(tmp_path, SCENARIO), "--step-time", "1",
                       limit_s=30)
    assert code == 2
    assert "run never finishes" in one_error_line(err)


@pytest.mark.parametrize("step", ["inf", "nan", "-1", "0"])
def test_non_finite_step_time_is_refused(tmp_path, monkeypatch, capsys, step):
    ok = {**SCENARIO, "run": {"tokens": 3.0e11, "failures": {"gpu": 1.0}}}
    code, _, err = cli(monkeypatch, capsys, "run", write(tmp_path, ok), "--step-time", step,
                       limit_s=30)
    assert code == 2
    assert "finite number of seconds > 0" in one_error_line(err)


def test_step_longer_than_mtbf_is_refused(monkeypatch, capsys):
    # Llama 3 405B failure rates on 16K GPUs: MTBF ~2.8 h against a 116-day step.
    code, _, err = cli(monkeypatch, capsys, "run", "scenarios/llama3_405b_run.yaml",
                       "--step-time", "1e7", limit_s=30)
    assert code == 2
    assert "run never finishes" in one_error_line(err)


def test_run_block_in_simulate_is_bounded(tmp_path, monkeypatch, capsys):
    data = {**SCENARIO, "workload": {**SCENARIO["workload"], "recompute": "full"},
            "sim": {"check_memory": False}}
    code, _, err = cli(monkeypatch, capsys, "simulate", write(tmp_path, data), limit_s=60)
    assert code == 2
    assert "run never finishes" in one_error_line(err)


def test_expected_events_match_daly():
    """The estimate the guard uses is Daly's expected failures per segment; the simulation
    of the same model counts the same number of events (within sampling noise)."""
    rate, k, step, ckpt, recovery = 1 / 200, 10, 1.0, 1.0, 2.0
    m = RunModel(step_s=step, total_steps=20_000, every_steps=k, ckpt_block_s=ckpt,
                 ckpt_write_s=ckpt, load_s=recovery / 2, restart_s=recovery / 2,
                 rates={"gpu": rate})
    per_segment = math.exp(rate * recovery) * math.expm1(rate * (k * step + ckpt))
    assert expected_events(m) == pytest.approx(2000 * (1 + per_segment))
    sims = [simulate_run(m, np.random.default_rng(s)) for s in range(4)]
    counted = np.mean([2000 + s.interruptions for s in sims])
    assert counted == pytest.approx(expected_events(m), rel=0.05)


def test_hard_event_limit_stops_a_run(monkeypatch):
    monkeypatch.setattr(reliability, "HARD_EVENT_LIMIT", 50)
    m = RunModel(step_s=1.0, total_steps=1000, every_steps=1, ckpt_block_s=0.0,
                 ckpt_write_s=0.0, load_s=0.0, restart_s=0.0)
    with pytest.raises(ClusterSimError, match="did not finish within 50"):
        simulate_run(m, np.random.default_rng(0))


def test_restart_many_mtbfs_long_is_refused(tmp_path, monkeypatch, capsys):
    """Found by the property test: MTBF ~3 min against a 40-minute restart. Each failure then
    expects e^13 further failures before the job is back; one sample ran 370k of them."""
    data = {"cluster": {"system": "dgx-h200", "nodes": 1},
            "workload": {"model": "megatron-1.7b", "global_batch": 4,
                         "parallel": {"tp": 2, "sequence_parallel": True}, "recompute": "full"},
            "sim": {"speed_scale": 4.0},
            "run": {"steps": 151, "failures": {"gpu": 58938.6, "software": 12.5},
                    "restart_s": 2396.2, "samples": 3, "seed": 2}}
    code, _, err = cli(monkeypatch, capsys, "simulate", write(tmp_path, data), limit_s=30)
    assert code == 2
    assert "each failure expects" in one_error_line(err)


def test_event_budget_bounds_a_whole_question(monkeypatch):
    from sim.run_bounds import EventBudget
    m = RunModel(step_s=1.0, total_steps=1000, every_steps=1, ckpt_block_s=0.0,
                 ckpt_write_s=0.0, load_s=0.0, restart_s=0.0)
    budget = EventBudget(1500)
    simulate_run(m, np.random.default_rng(0), budget)            # 1000 segments + the end
    with pytest.raises(ClusterSimError, match="did not finish within 1,500"):
        simulate_run(m, np.random.default_rng(0), budget)


def test_vanishing_failure_rate_is_no_failures(tmp_path, monkeypatch, capsys):
    """A subnormal rate has no finite MTBF: the run is priced as failure-free (found by the
    property test: the interval search overflowed and the summary held infinities)."""
    tiny = {**SCENARIO, "run": {"steps": 10, "failures": {"software": 2.2e-309}}}
    none = {**SCENARIO, "run": {"steps": 10, "failures": {"software": 0.0}}}
    outs = []
    for data in (tiny, none):
        code, out, _ = cli(monkeypatch, capsys, "run", write(tmp_path, data), "--step-time", "1",
                           "--format", "json", limit_s=30)
        assert code == 0
        outs.append(out)
    assert outs[0] == outs[1]
    assert "Infinity" not in outs[0] and "NaN" not in outs[0]


def test_negative_run_seed_is_refused(tmp_path, monkeypatch, capsys):
    bad = {**SCENARIO, "run": {"steps": 10, "seed": -1}}
    code, _, err = cli(monkeypatch, capsys, "run", write(tmp_path, bad), "--step-time", "1",
                       limit_s=30)
    assert code == 2
    assert "seed" in one_error_line(err)


@pytest.mark.parametrize("workload, says", [
    ({"optimizer": "sgd"}, "workload.optimizer: Input should be 'adam' or 'muon' (got 'sgd')"),
    ({"parallel": {"tp": 8, "pp": 8, "zero": 3}, "optimizer": "muon"}, "optimizer muon runs with zero 0 or 1"),
])
def test_run_checks_the_workload_like_simulate(tmp_path, monkeypatch, capsys, workload, says):
    """`run` reads the same scenario schema as `simulate`: a workload simulate refuses is
    refused here too, even though the step time comes from --tflops-per-gpu."""
    bad = {**SCENARIO, "run": {"tokens": 3.0e11, "failures": {"gpu": 1.0}},
           "workload": {**SCENARIO["workload"], **workload}}
    code, _, err = cli(monkeypatch, capsys, "run", write(tmp_path, bad), "--tflops-per-gpu", "400",
                       limit_s=30)
    assert code == 2 and says in one_error_line(err)
