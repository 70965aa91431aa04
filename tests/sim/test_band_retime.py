"""The band from one play (sim/band.py) against full re-plays and a hand calculation."""

import pytest

from hw_models.profile import band_profiles
from sim.band import Schedule, corner_time
from sim.costs import OpCosts
from sim.engine import Engine
from sim.network import AnalyticalNetwork
from sim.setup import make_network, resolve_setup
from sim.simulate import simulate
from workloads import training
from workloads.graph import Collective, CommGroup, Compute, ExecutionGraph


class Fixed:
    """Cost model: a compute op lasts its flops field in seconds."""
    def duration(self, node):
        return getattr(node.op, "flops", 0.0)

    def parts(self, node):
        return {}


class Timed:
    """Network: a collective lasts bytes seconds."""
    def collective(self, env, op):
        yield env.timeout(op.bytes)

    def collective_time(self, kind, nbytes, group):
        return nbytes


def two_rank_graph():
    g = ExecutionGraph(2)
    a = g.add(0, "compute", Compute("gemm", 3.0, 0.0))
    g.add(1, "compute", Compute("gemm", 5.0, 0.0))
    c0 = g.add(0, "comm", Collective("all_reduce", 2.0, CommGroup((0, 1)), seq=0), deps=(a,))
    c1 = g.add(1, "comm", Collective("all_reduce", 2.0, CommGroup((0, 1)), seq=0), deps=(1,))
    g.add(0, "compute", Compute("gemm", 1.0, 0.0), deps=(c0,))
    g.add(1, "compute", Compute("gemm", 4.0, 0.0), deps=(c1,))
    return g


def test_retime_hand_calculation():
    # Play: ranks ready at 3 and 5, all-reduce 5..7, then 8 and 11. Re-timed with every
    # compute doubled and the transfer x3: ready 6 and 10, transfer 10..16, ends 18 and 24.
    g = two_rank_graph()
    rows = Engine(g, Fixed(), Timed()).run()
    sched = Schedule(g, rows)
    assert sched.retime(lambda i: sched.played[i]) == pytest.approx(11.0)
    dur = [6.0, 10.0, 6.0, 6.0, 2.0, 8.0]
    assert sched.retime(lambda i: dur[i]) == pytest.approx(24.0)


def test_band_equals_full_replays_on_analytical(small_scenario):
    # On the analytical network a transfer's played time is its contention-free time, so
    # re-timing the schedule must give exactly what a new play on each corner gives.
    setup = resolve_setup(small_scenario)
    graph = training.build(setup.model, setup.plan, setup.options)
    prof = setup.profile
    from hw_models.compute import ComputeModel
    net = AnalyticalNetwork(setup.layout, prof)
    nominal = OpCosts(ComputeModel(setup.gpu, prof), net)
    rows = Engine(graph, nominal, net).run()
    sched = Schedule(graph, rows)
    for corner in band_profiles(prof):
        cnet = AnalyticalNetwork(setup.layout, corner)
        costs = OpCosts(ComputeModel(setup.gpu, corner), cnet)
        replay = max(r.end for r in Engine(graph, costs, cnet).run())
        assert corner_time(sched, graph, costs, cnet, net) == pytest.approx(replay, rel=1e-12)
        scaled = corner_time(sched, graph, costs, cnet, net, nominal)   # played x ratio
        assert scaled == pytest.approx(replay, rel=1e-12)


def test_retime_reproduces_the_flow_play(small_scenario):
    # Under flow fidelity, the played durations re-timed give back every node's end.
    sc = small_scenario.model_copy(deep=True)
    sc.sim.fidelity = "flow"
    setup = resolve_setup(sc)
    graph = training.build(setup.model, setup.plan, setup.options)
    from hw_models.compute import ComputeModel
    net = make_network(setup)
    net.set_simulated_ranks(graph.simulated_ranks)
    rows = Engine(graph, OpCosts(ComputeModel(setup.gpu, setup.profile), net), net).run()
    sched = Schedule(graph, rows)
    assert sched.retime(lambda i: sched.played[i]) == pytest.approx(max(r.end for r in rows),
                                                                     rel=1e-12)


def test_flow_band_brackets_and_is_close_to_full_replays(small_scenario):
    sc = small_scenario.model_copy(deep=True)
    sc.sim.fidelity = "flow"
    r = simulate(sc, residuals=False)                  # the bare bootstrap band
    lo, hi = r.band["iteration_time_s"]
    assert lo <= r.iteration_time_s <= hi
    fast, slow = band_profiles(resolve_setup(sc).profile)
    full = sorted(simulate(sc, p, band=False).iteration_time_s for p in (fast, slow))
    # Contention is scaled, not re-simulated: within 1% of full re-plays on this plan.
    assert (lo, hi) == pytest.approx(tuple(full), rel=1e-2)
