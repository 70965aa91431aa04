"""Energy within physical bounds, a hand-computed power curve, the trace's counter track,
serving runs and whole runs (failures count idle energy)."""

import numpy as np
import pytest

from hw_models import catalog
from hw_models.catalog import power_constants
from sim import scenario
from sim.energy import (
    Part,
    Parts,
    PowerModel,
    energy_of_curve,
    idle_power_w,
    rank_curve,
    run_energy,
)
from sim.simulate import simulate


def small(system="dgx-h100", nodes=2, **cluster):
    return scenario.parse({"cluster": {"system": system, "nodes": nodes, **cluster},
                           "workload": {"model": "megatron-1.7b", "global_batch": 16,
                                        "parallel": {"tp": 2, "pp": 2}}})


def test_power_curve_hand_calculation():
    """Rows [0, 1) weight 1.0 and [0.5, 2) weight 0.3 on a 700 W part idling at 70 W over
    3 s: activity 1.0, 1.3 (capped at 1), 0.3, 0 -> 3 x 70 + 630 x (0.5 + 0.5 + 0.3)."""
    pm = PowerModel(700.0, 70.0, {})
    times, level = rank_curve(np.array([0.0, 0.5]), np.array([1.0, 2.0]), np.array([1.0, 0.3]), 3.0)
    assert energy_of_curve(pm, times, level) == pytest.approx(3 * 70 + 630 * 1.3)


@pytest.mark.parametrize("system,nodes", [("dgx-h100", 2), ("gb200-nvl72", 4), ("mi355x-8", 1)])
def test_energy_within_idle_and_tdp(system, nodes):
    r = simulate(small(system, nodes), band=False)
    s = catalog.system(system)
    e, t, n = r.extra["energy"], r.iteration_time_s, r.world_size
    tdp = s.gpu_spec.tdp_w
    idle = power_constants()["idle_fraction"] * tdp
    assert idle * t * n < e["gpu_j"] < tdp * t * n
    assert r.extra["avg_power_w_per_gpu"] == pytest.approx(e["gpu_j"] / (t * n))
    # the whole IT load never exceeds the vendor's system maximum plus the switches
    cap = (s.system_max_kw or 0) * 1e3 * nodes if s.system_max_kw else tdp * n
    assert e["it_j"] <= cap * t + e["switch_j"] + (0 if s.system_max_kw else e["host_j"])
    assert r.extra["joules_per_token"] == pytest.approx(r.extra["energy_j"] / (16 * 2048))


def test_pue_scales_the_facility_energy():
    a = simulate(small(), band=False).extra
    b = simulate(small(pue=1.3), band=False).extra
    assert b["energy_j"] == pytest.approx(1.3 * a["energy_j"])
    assert b["energy"]["it_j"] == pytest.approx(a["energy"]["it_j"])


def test_power_counter_track_in_trace():
    r = simulate(small(), band=False)
    counters = [e for e in r.to_chrome_trace()["traceEvents"] if e["ph"] == "C"]
    watts = [e["args"]["watts"] for e in counters]
    assert counters and min(watts) >= 70.0 - 1e-9 and max(watts) <= 700.0 + 1e-9
    # the curve's integral is the boards' energy (each simulated rank stands for its peers)
    per_rank = [energy_of_curve(PowerModel(700, 70, {}), *_curve(r, rank))
                for rank in r.power["rank"].unique()]
    assert np.mean(per_rank) * r.world_size == pytest.approx(r.extra["energy"]["gpu_j"])


def _curve(r, rank):
    c = r.power[r.power["rank"] == rank]
    times = np.r_[c.t_s.to_numpy(), r.iteration_time_s]
    return times, (c.watts.to_numpy() - 70) / 630


def test_no_published_tdp_says_so():
    r = simulate(small("tpu-v5p", 4), band=False)
    assert r.extra["energy_j"] is None
    assert "no published TDP" in r.extra["energy"]["not_counted"][0]


def test_run_counts_restarts_at_idle_power():
    s = catalog.system("dgx-h100")
    parts = Parts([Part(s, 2)])
    step = {"energy_j": 1000.0}
    run = {"run_days": 1.0, "recovery_hours": 2.0, "checkpoint_hours": 1.0}
    out = run_energy(step, parts, 0.5, run, pue=1.0)
    busy = (86400 - 3 * 3600) * 1000 / 0.5
    assert out["idle_energy_j"] == pytest.approx(3 * 3600 * idle_power_w(parts))
    assert out["energy_j"] == pytest.approx(busy + out["idle_energy_j"])
    # idle: 16 GPUs x (70 W + half the full-load host draw per GPU) + one switch; the host
    # at full load is 0.626 of what 10.2 kW leaves beside 8 x 700 W (575 W per GPU)
    assert idle_power_w(parts) == pytest.approx(16 * (70 + 0.5 * 0.626 * 575) + 1000)


def test_node_at_full_load_draws_the_measured_maximum():
    """Fit check: 8 H100 at TDP plus the fitted host draw = Latif et al.'s 8.48 kW."""
    from sim.energy import host_w_per_gpu
    s = catalog.system("dgx-h100")
    assert 8 * (700 + host_w_per_gpu(s)) == pytest.approx(8480, rel=1e-3)


def test_serving_energy_bounds():
    sc = scenario.parse({
        "cluster": {"system": "dgx-h100", "nodes": 1},
        "workload": {"kind": "inference", "model": "llama3-8b", "parallel": {"tp": 1},
                     "replicas": 2, "requests": {"count": 40, "rate_per_s": 10.0, "seed": 1,
                                                 "prompt_len": 512, "output_len": 64}}})
    r = simulate(sc)
    s = r.summary()
    t = s["energy"]["seconds"]
    gpus = 8                                           # the whole node draws
    assert 70 * gpus * t < s["energy"]["gpu_j"] < 700 * gpus * t
    assert s["joules_per_token"] > 0 and s["cost_usd"] == pytest.approx(3.0 * gpus * t / 3600)


def test_serving_trace_has_a_power_track():
    sc = scenario.parse({
        "cluster": {"system": "dgx-h100", "nodes": 1},
        "workload": {"kind": "inference", "model": "llama3-8b", "parallel": {"tp": 1},
                     "replicas": 2, "requests": {"count": 20, "rate_per_s": 10.0, "seed": 1,
                                                 "prompt_len": 512, "output_len": 16}}})
    trace = simulate(sc).to_chrome_trace()
    watts = [e["args"]["watts"] for e in trace["traceEvents"] if e["ph"] == "C"]
    # prefill iterations at TDP, decode-only at idle + 60% of the range, idle between
    assert set(watts) == {700.0, 70.0 + 0.6 * 630, 70.0}


def test_overlap_row_counts_its_compute_and_its_transfers():
    """An Overlap of a 3 s GEMM (weight 1.0) and a 2 s scale-up all-gather (weight 0.4)
    that takes 4 s in all: (3 x 1.0 + 2 x 0.4) / 4 = 0.95; a transfer longer than the op
    counts the op's time only: GEMM 1 s, all-gather 5 s, op 5 s -> (1 + 5 x 0.4) / 5."""
    from sim.energy import RowWeights
    from workloads.graph import Collective, CommGroup, Compute, Overlap

    gemm = Compute("gemm", flops=1.0, name="g")
    ag = Collective("all_gather", 1.0, CommGroup((0, 1), "cp"), name="ag")
    times = {gemm: 3.0, ag: 2.0}

    class Costs:
        def op_time(self, op):
            return 4.0 if isinstance(op, Overlap) else times[op]

    parts = Parts([Part(catalog.system("dgx-h100"), 1)])
    w = {"compute": 1.0, "memory": 0.5, "scale_up": 0.4, "nic": 0.2}
    rows = RowWeights(None, lambda rank: Costs(), parts, w)
    op = Overlap(main=(gemm,), hidden=(ag,), steps=1)
    assert rows.of_op(op, 0) == pytest.approx((3 * 1.0 + 2 * 0.4) / 4)
    times.update({gemm: 1.0, ag: 5.0})
    Costs.op_time = lambda self, op: 5.0 if isinstance(op, Overlap) else times[op]
    assert rows.of_op(op, 0) == pytest.approx((1 + 5 * 0.4) / 5)
