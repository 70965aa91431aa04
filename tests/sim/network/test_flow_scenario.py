"""A scenario that leaves network keys unset runs under flow fidelity with catalog values."""

from sim import scenario
from sim.simulate import simulate


def test_flow_fidelity_without_network_keys_uses_the_catalog():
    small = ["cluster.nodes=2", "workload.model=megatron-1.7b", "workload.global_batch=16",
             "workload.parallel.tp=2", "workload.parallel.pp=1", "workload.parallel.vpp=1",
             "workload.parallel.schedule=1f1b"]
    flow = simulate(scenario.default(small + ["sim.fidelity=flow"]))
    ana = simulate(scenario.default(small))
    # Same catalog bandwidths: flow and closed form agree on an uncontended DP ring to 20%.
    assert abs(flow.iteration_time_s / ana.iteration_time_s - 1) < 0.2


def test_routing_and_tolerance_reach_the_flow_model():
    from sim.setup import make_network, resolve_setup
    sc = scenario.default(["sim.fidelity=flow",
                           "cluster.network.routing=spray", "cluster.network.tolerance=0"])
    net = make_network(resolve_setup(sc))
    assert net.topology.routing == "spray" and net.tolerance == 0.0
