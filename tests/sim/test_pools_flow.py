"""Heterogeneous clusters at sim.fidelity: flow. Each pool plays its own fabric; traffic
between pools runs as flows over the common network. With no contention the two
fidelities agree; a GPU's NIC share is shared by the flows leaving it (hand calculations)."""

import copy

import pytest

from hw_models import profile
from sim import scenario
from sim.pool_flows import CommonNetwork
from sim.pools import make_pools
from sim.simulate import simulate
from tests.sim.test_pools_pipeline import two_pools
from tests.sim.test_pools_serving import BASE


def at(sc, fidelity):
    return sc.model_copy(update={"sim": sc.sim.model_copy(update={"fidelity": fidelity})})


def test_two_pool_pipeline_flow_equals_analytical_without_contention():
    # one GPU per pool: every transfer is alone on its links
    ana, flow = simulate(at(two_pools(), "analytical")), simulate(at(two_pools(), "flow"))
    assert flow.fidelity == "flow" and ana.fidelity == "analytical"
    assert flow.iteration_time_s == pytest.approx(ana.iteration_time_s, rel=1e-9)
    # the cross-pool send as a flow: 1 x 2048 x 2304 bf16 activations at the slower NIC
    # share (400 Gb/s = 50 GB/s) on the sender's (H100) scale-out curve, after one network
    # step's latency (35.501 + 6.6 + 2.7 - 35.2 = 9.601 us, test_pools_pipeline)
    nbytes = 2048 * 2304 * 2
    c = 9.601e-6 + nbytes / (50e9 * profile.load("h100").collectives["network"].eff(nbytes))
    tl = flow.timeline
    sends = tl[tl.stream == "send_fwd"]
    assert (sends.end - sends.start).to_numpy() == pytest.approx(c)


def test_common_network_shares_a_gpus_nic():
    pools = make_pools(at(two_pools(), "flow"))
    net = CommonNetwork(pools)
    curve = profile.load("h100").collectives["network"]
    b = 64e6
    eff = curve.eff_max / (1 + (curve.bytes_half / b) ** curve.gamma)
    one = net.alone(((0, 1),), b, curve)
    assert one == pytest.approx(curve.latency_us * 1e-6 + b / eff / 50e9)
    # 0 -> 1 and 1 -> 0 at once: each direction has its own link, no sharing
    assert net.alone(((0, 1), (1, 0)), b, curve) == pytest.approx(one)
    # two flows out of GPU 0's one NIC share (a 2-rank group's ring has two hops)
    two = CommonNetwork(pools)
    two.cap[:] = 50e9
    assert two.alone(((0, 1), (0, 1)), b, curve) == pytest.approx(
        curve.latency_us * 1e-6 + 2 * b / eff / 50e9)


def test_pools_of_dgx_nodes_under_flow():
    data = {"cluster": {"pools": [{"name": "h", "system": "dgx-h100", "nodes": 2},
                                  {"name": "b", "system": "dgx-b200", "nodes": 2}]},
            "workload": {"model": "megatron-7.5b", "global_batch": 64,
                         "parallel": {"tp": 8, "pp": 2, "pipeline_layers": [12, 24]}}}
    ana = simulate(scenario.parse(data))
    flow = simulate(scenario.parse(data | {"sim": {"fidelity": "flow"}}))
    assert flow.fidelity == "flow"
    # TP on NVSwitch and DP over two nodes per pool played as flows: close, not equal
    assert flow.iteration_time_s == pytest.approx(ana.iteration_time_s, rel=0.1)


def test_serving_pools_under_flow():
    data = copy.deepcopy(BASE)
    data["workload"] |= {"parallel": {"tp": 2}, "replica_pools": ["h100", "a100"]}
    data["workload"]["requests"]["count"] = 40
    ana = simulate(scenario.parse(data)).summary()
    flow = simulate(scenario.parse(data | {"sim": {"fidelity": "flow"}})).summary()
    # TP=2 all-reduces timed on each pool's flow fabric: same order as the closed form
    assert flow["tpot_ms"]["p50"] == pytest.approx(ana["tpot_ms"]["p50"], rel=0.25)


def test_rl_step_on_pools_runs_under_flow():
    # an RL step times its phases analytically; its cross-pool weight sync prices the
    # pools' scale-out curve, which the pools carry at either fidelity
    from pathlib import Path
    ex = Path(__file__).resolve().parents[2] / "examples" / "rl_pools_b200_h100.yaml"
    ana = simulate(scenario.load(ex))
    flow = simulate(scenario.load(ex, ["sim.fidelity=flow"]))
    assert flow.metrics["step_time_s"] == pytest.approx(ana.metrics["step_time_s"])
