"""Persistent slow nodes against hand calculations (M/G/inf episodes, see sim/stragglers.py)."""

import math

import numpy as np
import pytest

from sim.reliability import RunModel, monte_carlo, straggler_fields, summarize
from sim.run_config import RunConfig, Stragglers, parse
from sim.stragglers import SlowNodes, SlowSchedule

T = 10.0


def model(slow: SlowNodes | None, **kw) -> RunModel:
    base = dict(step_s=T, total_steps=100_000, every_steps=1000, ckpt_block_s=0.0,
                ckpt_write_s=0.0, load_s=0.0, restart_s=0.0, slow_nodes=slow)
    return RunModel(**{**base, **kw})


def test_schedule_stretches_work_by_the_slowdown_inside_an_episode():
    sched = SlowSchedule(SlowNodes(rate=0.0, mean_s=1.0, slowdown=2.0), np.random.default_rng(0))
    sched.starts, sched.ends = [10.0, 30.0], [20.0, 40.0]          # two hand-placed episodes
    # 10 s fast, 10 s slow (5 s of work), 10 s fast, then 5 s of work left at half speed.
    assert sched.finish(0.0, 30.0) == pytest.approx(40.0)
    assert sched.finish(15.0, 1.0) == pytest.approx(17.0)
    assert sched.finish(45.0, 3.0) == pytest.approx(48.0)          # no episode ever again


def test_goodput_without_detection_is_one_minus_the_mg_inf_loss():
    # 1 episode per 2 h, 1 h long on average: gated 1 - e^-0.5 = 39.3% of the time, and
    # a gated second does 1/1.5 of a second's work: loss = 0.393 x (1 - 1/1.5) = 13.1%.
    slow = SlowNodes(rate=1 / 7200, mean_s=3600, slowdown=1.5)
    assert slow.loss_fraction == pytest.approx(-math.expm1(-0.5) / 3)
    s = summarize(monte_carlo(model(slow), seed=5, samples=24))
    assert abs(s["goodput"] - (1 - slow.loss_fraction)) < 4 * s["goodput_se"]


def test_detection_bounds_the_loss_by_delay_times_rate():
    # Drained (live swap) 10 min after turning slow: loss <= rate x detect x (1 - 1/s)
    # = (1/7200) x 600 x (1/3) = 2.78%; exactly 1 - e^-(rate E[min(D, d)]) x 1/3 = 2.46%.
    slow = SlowNodes(rate=1 / 7200, mean_s=3600, slowdown=1.5, detect_s=600, drain_restart=False)
    bound = 600 / 7200 * (1 - 1 / 1.5)
    mean_len = 3600 * (1 - math.exp(-600 / 3600))
    assert slow.loss_fraction == pytest.approx(-math.expm1(-mean_len / 7200) / 3)
    s = summarize(monte_carlo(model(slow), seed=6, samples=24))
    loss = 1 - s["goodput"]
    assert loss < bound + 3 * s["goodput_se"]
    assert abs(loss - slow.loss_fraction) < 4 * s["goodput_se"]
    never = summarize(monte_carlo(model(SlowNodes(rate=1 / 7200, mean_s=3600, slowdown=1.5)),
                                  seed=6, samples=8))
    assert never["goodput"] < s["goodput"]


def test_draining_with_a_restart_is_an_interruption():
    # Every episode longer than the detection delay ends in a restart: on average
    # rate x P(D > d) x wall = (1/7200) x e^-1/6 x wall of them.
    slow = SlowNodes(rate=1 / 7200, mean_s=3600, slowdown=1.5, detect_s=600)
    s = monte_carlo(model(slow, restart_s=300.0), seed=7, samples=16)
    per_run = [st.by_cause.get("straggler", 0) / st.wall_s for st in s]
    assert np.mean(per_run) == pytest.approx(math.exp(-1 / 6) / 7200, rel=0.1)


def test_goodput_drops_monotonically_with_straggler_fraction():
    cfg = {"mode": "persistent", "slowdown": 1.3, "duration_s": 3600, "detect_s": 1800,
           "drain": "live"}
    g = []
    for f in (0.0, 1e-4, 3e-4, 1e-3, 3e-3):
        fields = straggler_fields(parse(Stragglers, {**cfg, "fraction": f}, "s"), nodes=256)
        g.append(summarize(monte_carlo(model(fields.get("slow_nodes")), 8, 6))["goodput"])
    assert g[0] == 1.0 and all(a > b for a, b in zip(g, g[1:], strict=False))


def test_independent_mode_stays_the_default():
    run = parse(RunConfig, {"steps": 10, "stragglers": {"fraction": 0.01, "slowdown": 2}}, "run")
    f = straggler_fields(run.stragglers, nodes=64)
    assert f == {"straggler_p": pytest.approx(1 - 0.99 ** 64), "slowdown": 2}
