"""Flow model: contention against oversubscription and NIC bounds, symmetric peers,
incremental re-solve and weighted flows against a brute-force reference."""

import numpy as np
import pytest
import simpy

from hw_models import catalog
from hw_models.profile import load_builtin
from hw_models.topology import build_topology
from sim.network.analytical import ClusterLayout
from sim.network.fabric import Fabric
from sim.network.flow import FlowNetwork
from sim.network.maxmin import maxmin_rates
from sim.simulate import simulate
from workloads.graph import CommGroup

H100 = catalog.system("dgx-h100")
GIB = float(1 << 30)


def net(nodes, cfg=None):
    return FlowNetwork(ClusterLayout(H100, nodes, H100.nic_gbps), load_builtin("h100"), cfg)


def dp_transfer_time(cfg, nodes=64):
    """DP ring all_reduce of 1 GiB over one rank per node, the 7 TP-peer groups placed too;
    returns the time spent moving bytes (latency term taken off)."""
    nw = net(nodes, cfg | {"algo": "ring", "proto": "Simple"})
    group = CommGroup(tuple(range(0, nodes * 8, 8)))
    nw.set_simulated_ranks(group.ranks)
    ch = nw.choose("all_reduce", GIB, group)
    return nw.collective_time("all_reduce", GIB, group) - ch.latency_s


def test_dp_all_reduce_64_nodes_oversubscribed_by_the_oversubscription():
    # One node per leaf: its 8 NICs share 8 / 4 = 2 uplinks, so every ring hop runs at a
    # quarter of the NIC rate; rail-optimized 1:1 runs at the NIC rate. With adaptive
    # routing (spray) the ratio is exactly 4; static ECMP can only add hash collisions.
    fat = {"topology": "fat-tree", "oversubscription": 4, "leaf_down": 8}
    rail = {"topology": "rail-optimized"}
    spray = dp_transfer_time(fat | {"routing": "spray"}) / dp_transfer_time(rail | {"routing": "spray"})
    assert spray == pytest.approx(4.0, rel=1e-6)
    assert dp_transfer_time(fat) / dp_transfer_time(rail) >= 4.0 - 1e-9


@pytest.mark.parametrize("routing", ["spray", "ecmp"])
def test_all_to_all_across_nodes_bounded_by_per_gpu_nic(routing):
    nodes = 8
    n = nodes * 8
    nw = net(nodes, {"routing": routing})
    group = CommGroup(tuple(range(n)))
    ch = nw.choose("all_to_all", GIB, group)
    moving = (nw.collective_time("all_to_all", GIB, group) - ch.latency_s) / ch.wire_factor
    bound = GIB / n * (n - 8) / H100.nic_bw_per_gpu     # what one GPU sends off its node
    if routing == "spray":                              # 1:1 fabric, no collisions: the NIC
        assert moving == pytest.approx(bound, rel=1e-6)
    else:
        assert moving >= bound * (1 - 1e-9)


def test_spray_splits_conserve_the_flow():
    topo = build_topology(H100, 8, {"topology": "fat-tree", "oversubscription": 2})
    u, v = int(topo.gpu_vertex[0]), int(topo.gpu_vertex[63])
    links, frac = topo.spread_v(u, v)
    out_u = frac[topo.src[links] == u].sum()
    into_v = frac[topo.dst[links] == v].sum()
    assert out_u == pytest.approx(1.0) and into_v == pytest.approx(1.0)
    assert len(np.unique(links)) == len(links) > len(topo.route_v(u, v))


def test_each_unsimulated_peer_placed_once():
    # tp 8, dp 16, pp 2 in Megatron order: the graph simulates ranks 0 and 128.
    nw = net(32)
    nw.set_simulated_ranks((0, 128))
    placed = []
    for stage in (0, 1):
        dp = tuple(stage * 128 + 8 * d for d in range(16))
        sib = nw.siblings(dp)
        assert len(sib) == 7                        # the other 7 TP lanes of this stage
        placed += [r for g in [dp] + sib for r in g]
    assert sorted(placed) == list(range(256))       # every rank once, none twice
    pipe = nw.siblings((0, 128))
    assert len(pipe) == 127 and set(pipe) == {(o, 128 + o) for o in range(1, 128)}


def test_siblings_load_the_links():
    fat = {"topology": "fat-tree", "oversubscription": 4, "leaf_down": 8, "algo": "ring",
           "proto": "Simple"}
    group = CommGroup(tuple(range(0, 128, 8)))
    alone, full = net(16, fat), net(16, fat)
    full.set_simulated_ranks((0,))                  # rank 0 stands for its 7 TP peers
    t_alone = alone.collective_time("all_reduce", GIB, group)
    assert full.collective_time("all_reduce", GIB, group) > 3 * t_alone


def _reference_completion(flows, cap):
    """Brute force: re-solve every flow globally at every end."""
    remaining = np.array([b for _, b, _ in flows], float)
    start = np.array([t for _, _, t in flows], float)
    done = np.full(len(flows), np.nan)
    now = 0.0
    while np.isnan(done).any():
        live = np.flatnonzero(np.isnan(done) & (start <= now + 1e-15))
        rates = maxmin_rates([flows[i][0] for i in live], cap) if len(live) else np.zeros(0)
        t_end = now + (remaining[live] / rates).min() if len(live) else np.inf
        pending = start[np.isnan(done) & (start > now + 1e-15)]
        t_next = min(t_end, pending.min() if len(pending) else np.inf)
        remaining[live] -= rates * (t_next - now)
        now = t_next
        done[live[remaining[live] <= 1e-9]] = now
    return done


def test_incremental_resolve_matches_global_resolve():
    rng = np.random.default_rng(7)
    cap = rng.uniform(1.0, 5.0, 12)
    flows = [(rng.choice(12, size=rng.integers(1, 4), replace=False), float(rng.uniform(1, 9)),
              float(rng.integers(0, 4))) for _ in range(25)]
    env = simpy.Environment()
    fab = Fabric(env, cap)
    ends = [None] * len(flows)

    def start(i, path, nbytes, t0):
        yield env.timeout(t0)
        yield fab.transfer([(path, nbytes)])
        ends[i] = env.now
    for i, (path, nbytes, t0) in enumerate(flows):
        env.process(start(i, path, nbytes, t0))
    env.run()
    assert np.array(ends) == pytest.approx(_reference_completion(flows, cap), rel=1e-9)


def test_weighted_flow_is_that_many_flows():
    cap = np.array([12.0, 5.0, 9.0])
    paths = [np.array([0, 1]), np.array([0]), np.array([0, 2])]
    many = maxmin_rates([paths[0]] * 3 + paths[1:], cap)
    weighted = maxmin_rates(paths, cap, weight=np.array([3.0, 1.0, 1.0]))
    assert weighted == pytest.approx([many[0], many[3], many[4]])


def test_tolerance_keeps_all_to_all_time():
    group = CommGroup(tuple(range(32)))
    exact = net(4, {"tolerance": 0.0}).collective_time("all_to_all", GIB, group)
    fast = net(4).collective_time("all_to_all", GIB, group)
    assert fast == pytest.approx(exact, rel=0.01)


def test_training_runs_under_flow(small_scenario):
    sim = small_scenario.sim.model_copy(update={"fidelity": "flow"})
    flow = simulate(small_scenario.model_copy(update={"sim": sim}))
    analytical = simulate(small_scenario)
    assert flow.fidelity == "flow"
    assert flow.breakdown["dp"] > 0
    # Same graph, same compute; only communication times differ between the models.
    assert flow.iteration_time_s == pytest.approx(analytical.iteration_time_s, rel=0.25)
