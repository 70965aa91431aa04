"""An async checkpoint write played as flows during a training iteration, and what the whole-run
model charges for it (hand calculations)."""

import pytest

from sim import scenario
from sim.reliability import RunModel, contention_fields, run_summary, simulate_run
from sim.simulate import simulate
from workloads.graph import Collective

# Inline tier with no per-client limit and 1 TB/s aggregate: only the NICs can bind (2 nodes).
FAST = {"kind": "parallel_fs", "read_gb_s_aggregate": 1000, "write_gb_s_aggregate": 1000,
        "latency_ms": 1.0}


def _scenario(network: str, mode: str = "async") -> scenario.Scenario:
    # 2 DGX H100, tp 8 x dp 2: rank r on node 0 and rank r + 8 on node 1 all-reduce gradients
    # through rail r's NIC. Without a sharded optimizer one replica writes: ranks 0-7 (node 0),
    # each 1/8 of 14 B x 1.65e9 params = 2.9 GB, 58 ms at 50 GB/s: longer than the iteration's
    # compute plus its gradient all-reduce, so the write is in flight for the whole all-reduce.
# Max-min solver tolerance 0: exact progressive filling.
    return scenario.parse({
        "cluster": {"system": "dgx-h100", "nodes": 2, "network": {"tolerance": 0},
                    "storage": {"checkpoint": FAST, "network": network}},
        "workload": {"model": "megatron-1.7b", "global_batch": 2, "micro_batch": 1,
                     "parallel": {"tp": 8}, "overlap_grad_reduce": False,
                     "checkpoint": {"every_steps": 10, "mode": mode}},
        "sim": {"fidelity": "flow", "check_memory": False}})


def _dp_wire(sc) -> float:
    """Bandwidth term (time alone minus NCCL latency) of every DP collective of the iteration."""
    from sim.setup import make_network, resolve_setup
    from workloads import training
    setup = resolve_setup(sc)
    net = make_network(setup)
    total = 0.0
    for node in training.build(setup.model, setup.plan, setup.options).nodes:
        op = node.op
        if isinstance(op, Collective) and op.group.dim == "dp":
            alone = net.collective_time(op.kind, op.bytes, op.group)
            total += alone - net.choose(op.kind, op.bytes, op.group).latency_s
    return total


def test_write_on_the_training_nics_halves_the_gradient_allreduce():
    sc = _scenario("converged")
    res = simulate(sc, band=False)
    cc = res.extra["checkpoint_contention"]
    assert cc["writers"] == 8 and cc["attach"] == "backend"
    assert cc["iteration_s_without"] == res.iteration_time_s
    # Rank r's gradient flow to r + 8 shares r's NIC (and leaf link) with r's write flow: max-min
    # gives each half of 50 GB/s, so the all-reduce's bandwidth term doubles (the flows from
    # node 1 have their NICs to themselves; a ring phase ends with its slowest flow). The
    # iteration is longer by exactly the all-reduce's bandwidth term.
    wire = _dp_wire(sc)
    t0, t1 = cc["iteration_s_without"], cc["iteration_s_with"]
    assert wire > 0.3 * t0
    assert t1 - t0 == pytest.approx(wire, rel=1e-6)
    # The write outlasts the step. Each of the 8 writers sends at 50 GB/s from the tier's 1 ms
    # latency on, except for the 2 x wire seconds of the all-reduce, at 25 GB/s: by the step's
    # end 8 x 50e9 x (t1 - 1 ms - wire) bytes. The rest goes at that pace in the next step.
    lat, moved = 1e-3, 8 * 50e9 * (t1 - 1e-3 - wire)
    pace = moved / (t1 - lat)
    assert cc["write_s"] == pytest.approx(t1 + (cc["bytes"] - moved) / pace, rel=1e-6)
    assert cc["overlapped_steps"] == pytest.approx(cc["write_s"] / t1)
    assert 1 < cc["overlapped_steps"] < 2


def test_dedicated_storage_network_leaves_the_step_unchanged():
    res = simulate(_scenario("dgx-h100-storage"), band=False)
    cc = res.extra["checkpoint_contention"]
    assert cc["attach"] == "frontend"
    assert cc["iteration_s_with"] == cc["iteration_s_without"] == res.iteration_time_s
    # node 0's 8 writers behind its 2 x 400 Gb/s storage NICs: 100 GB/s.
    assert cc["write_s"] == pytest.approx(cc["bytes"] / 100e9 + 1e-3, rel=1e-6)


def test_no_contention_record_for_sync_or_analytical():
    assert "checkpoint_contention" not in simulate(_scenario("converged", "sync"), band=False).extra
    sc = _scenario("converged").model_copy(update={"sim": scenario.SimConfig()})
    assert "checkpoint_contention" not in simulate(sc, band=False).extra


def _model(**kw) -> RunModel:
    base = {"step_s": 1.0, "total_steps": 20, "every_steps": 10, "ckpt_block_s": 0.1,
            "ckpt_write_s": 3.0, "load_s": 0.0, "restart_s": 0.0}
    return RunModel(**(base | kw))


def test_run_model_charges_the_slowed_steps_per_checkpoint():
    import numpy as np
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    plain = simulate_run(_model(), rng())
    # 2.5 steps overlap each write, each 0.25 s slower. Two checkpoints (steps 10, 20); only the
    # first is followed by training, so 0.625 s more wall and checkpoint time.
    slow = simulate_run(_model(write_slow_s=0.25, write_steps=2.5), rng())
    # plain: 10 + 0.1 + 10 + 0.1 + the last write's remaining 2.9 s
    assert plain.wall_s == pytest.approx(23.1) and plain.ckpt_s == pytest.approx(3.1)
    assert slow.wall_s - plain.wall_s == pytest.approx(0.625)
    assert slow.ckpt_s - plain.ckpt_s == pytest.approx(0.625)
    assert slow.useful_s == plain.useful_s == 20.0
    # A segment shorter than the write: only its k = 2 steps are slowed (then the next snapshot
    # waits for the write), 9 checkpoints out of 10 followed by training.
    short = simulate_run(_model(every_steps=2, ckpt_write_s=1.0, write_slow_s=0.25,
                                write_steps=5), rng())
    base = simulate_run(_model(every_steps=2, ckpt_write_s=1.0), rng())
    assert short.wall_s - base.wall_s == pytest.approx(9 * 0.25 * 2)


def test_run_summary_overhead_rises_by_slowed_steps_over_total():
    scen = {"cluster": {"system": "dgx-h100", "nodes": 2,
                        "storage": {"checkpoint": FAST, "network": "converged"}},
            "workload": {"model": "megatron-1.7b", "global_batch": 2, "parallel": {"tp": 8},
                         "checkpoint": {"every_steps": 10, "mode": "async"}},
            "run": {"steps": 100, "samples": 2}}
    plain = run_summary(scen, 1.0)
    # the write as long as the analytical one (58 ms), so only the slowed steps differ
    cc = {"iteration_s_without": 1.0, "iteration_s_with": 1.2,
          "write_s": plain["checkpoint_write_s"], "overlapped_steps": 1.0}
    got = run_summary(scen, 1.0, cc)
    # 10 checkpoints, 9 followed by training: 9 x 0.2 s more, all of it checkpoint overhead.
    wall0 = 100 / plain["goodput"]
    wall1 = 100 / got["goodput"]
    assert wall1 - wall0 == pytest.approx(9 * 0.2)
    ckpt0, ckpt1 = plain["checkpoint_overhead_pct"] * wall0, got["checkpoint_overhead_pct"] * wall1
    assert (ckpt1 - ckpt0) / 100 == pytest.approx(9 * 0.2)
    assert got["ckpt_slowed_step_s"] == pytest.approx(1.2)
    # Frontend: the slowed step equals the plain one; only the snapshot is charged.
    same = run_summary(scen, 1.0, {**cc, "iteration_s_with": 1.0})
    assert same["goodput"] == plain["goodput"]


def test_overlap_derived_from_the_analytical_write_when_not_simulated():
    # `clustersim run --slowed-step-time`: the write lasts the analytical 6 s, steps of 1.5 s.
    f = contention_fields({"iteration_s_without": 1.0, "iteration_s_with": 1.5}, "async", 6.0)
    assert f == {"ckpt_write_s": 6.0, "write_steps": 4.0, "write_slow_s": 0.5}
    assert contention_fields({"iteration_s_without": 1.0, "iteration_s_with": 1.5}, "sync",
                             6.0) == {"ckpt_write_s": 6.0}
