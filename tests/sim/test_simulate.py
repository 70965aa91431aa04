"""End-to-end behaviour of simulate(): determinism, consistency, what-if directions."""

import pytest

from sim import scenario
from sim.simulate import simulate


def test_deterministic(small_scenario):
    a, b = simulate(small_scenario), simulate(small_scenario)
    assert a.iteration_time_s == b.iteration_time_s
    assert a.breakdown == b.breakdown


def test_breakdown_sums_to_iteration_time(small_scenario):
    r = simulate(small_scenario)
    assert sum(r.breakdown.values()) == pytest.approx(r.iteration_time_s, rel=1e-9)


def test_metrics_consistent(small_scenario):
    r = simulate(small_scenario)
    assert r.tokens_per_s == pytest.approx(32 * 2048 / r.iteration_time_s)
    peak = 312e12
    assert r.mfu == pytest.approx(r.tflops_per_gpu * 1e12 / peak)
    assert r.hfu >= r.mfu


def test_faster_gpu_is_faster(small_scenario):
    base = simulate(small_scenario).iteration_time_s
    h100 = small_scenario.model_copy(deep=True)
    h100.cluster.system = "dgx-h100"
    assert simulate(h100).iteration_time_s < base


def test_full_recompute_costs_time_and_saves_memory(small_scenario):
    full = small_scenario.model_copy(deep=True)
    full.workload.recompute = "full"
    a, b = simulate(small_scenario), simulate(full)
    assert b.iteration_time_s > a.iteration_time_s
    assert b.memory_peak_gib < a.memory_peak_gib
    assert b.hfu > b.mfu


def test_default_scenario_runs():
    r = simulate(scenario.default())
    assert r.world_size == 1024 and 0.2 < r.mfu < 0.7
