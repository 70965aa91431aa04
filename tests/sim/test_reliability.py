"""The run simulation against Daly's closed form, Young's optimum and plain bookkeeping."""

import math

import numpy as np
import pytest

from sim.reliability import (
    RunModel,
    best_interval,
    daly_goodput,
    monte_carlo,
    simulate_run,
    summarize,
    young_interval,
)

T, M, C, R = 10.0, 3 * 3600.0, 60.0, 600.0     # step, MTBF, checkpoint, recovery (seconds)


def model(**kw) -> RunModel:
    base = dict(step_s=T, total_steps=12000, every_steps=114, ckpt_block_s=C, ckpt_write_s=C,
                load_s=0.0, restart_s=R, rates={"gpu": 1 / M})
    return RunModel(**{**base, **kw})


def test_without_failures_goodput_is_work_over_work_plus_checkpoints():
    st = simulate_run(model(rates={}, every_steps=100), np.random.default_rng(0))
    assert st.goodput == pytest.approx(1000 / 1060) and st.interruptions == 0


def test_goodput_matches_daly_within_monte_carlo_error():
    m = model()
    s = summarize(monte_carlo(m, seed=1, samples=24))
    expected = daly_goodput(m.every_steps * T, C, R, M)
    assert abs(s["goodput"] - expected) < 4 * s["goodput_se"]
    assert s["interruptions"] == pytest.approx(s["run_days"] * 86400 / M, rel=0.15)


def test_best_interval_is_near_young():
    best, curve = best_interval(model(), seed=2, samples=6)
    young = young_interval(C, M) / T                           # 113.8 steps
    assert young / 1.5 < best < young * 1.5
    assert curve[best] >= max(curve.values()) - 1e-12


def test_stragglers_lower_goodput_as_their_fraction_grows():
    g = [summarize(monte_carlo(model(straggler_p=1 - (1 - f) ** 64, slowdown=1.5), 3, 4))["goodput"]
         for f in (0.0, 0.001, 0.01)]
    assert g[0] > g[1] > g[2]


def test_async_beats_sync_when_the_write_is_long():
    sync = model(ckpt_block_s=300, ckpt_write_s=300, every_steps=300)
    asyn = model(ckpt_block_s=2, ckpt_write_s=300, every_steps=300)
    gs, ga = (summarize(monte_carlo(m, 4, 6))["goodput"] for m in (sync, asyn))
    assert ga > gs


def test_hot_spares_cut_lost_time_and_runs_are_deterministic():
    kw = dict(replace_s=3600.0, repair_s=86400.0)
    none, spare = (summarize(monte_carlo(model(hot_spares=n, **kw), 5, 4)) for n in (0, 8))
    assert spare["lost_hours"] < none["lost_hours"]
    assert summarize(monte_carlo(model(), 7, 3)) == summarize(monte_carlo(model(), 7, 3))
    assert math.isclose(sum(simulate_run(model(), np.random.default_rng(9)).by_cause.values()),
                        simulate_run(model(), np.random.default_rng(9)).interruptions)
