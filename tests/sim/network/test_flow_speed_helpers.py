"""Speed helpers of the flow model give what the plain definitions give."""

import numpy as np
import pytest

from hw_models import catalog
from hw_models.errors import ClusterSimError
from hw_models.profile import load_builtin
from hw_models.routing import unique_ints
from sim.network.analytical import ClusterLayout
from sim.network.collectives.base import ALGORITHMS
from sim.network.flow import FlowNetwork, _disjoint
from workloads.graph import CommGroup

H100 = catalog.system("dgx-h100")


def brute_siblings(net: FlowNetwork, ranks: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The module doc's rule over every offset: each shifted rank unsimulated, standing in
    for the same representative, outside the group; sharing a domain or spanning several."""
    sim = sorted(net._simulated)
    world, dom = net.layout.world_size, net.topology.domain

    def owner(r):
        return max([s for s in sim if s <= r], default=sim[0])
    out = []
    for off in range(-min(ranks), world - max(ranks)):
        cand = tuple(r + off for r in ranks)
        if off == 0 or any(c in net._simulated or c in ranks for c in cand):
            continue
        if any(owner(c) != owner(r) for c, r in zip(cand, ranks, strict=True)):
            continue
        doms = {r // dom for r in ranks}
        if len(doms) > 1 or {c // dom for c in cand} & doms:
            out.append(cand)
    return _disjoint(out)


@pytest.mark.parametrize("simulated", [(0, 64, 128, 192), (8, 64, 100, 200), (0, 32)])
def test_siblings_equal_the_rule_over_all_offsets(simulated):
    net = FlowNetwork(ClusterLayout(H100, 32, H100.nic_gbps), load_builtin("h100"))
    net.set_simulated_ranks(simulated)
    rng = np.random.default_rng(3)
    groups = [(0, 8, 16, 24), (0, 64), (64, 128), (1, 2), (0, 1, 2, 3, 4, 5, 6, 7)]
    groups += [tuple(sorted(set(rng.integers(0, 256, 3).tolist()))) for _ in range(20)]
    for g in groups:
        if len(g) > 1:
            assert net.siblings(g) == brute_siblings(net, g), g


def test_sort_based_unique_equals_numpy():
    rng = np.random.default_rng(5)
    for n in (0, 1, 2, 1000):
        x = rng.integers(-50, 50, n)
        assert np.array_equal(unique_ints(x), np.unique(x))


def reference_phase_flows(net: FlowNetwork, choice, kind, nbytes, ranks):
    """Every group's plan built on its own (what _phase_flows shortcuts for siblings)."""
    plans = [net.tuner.plan(choice, kind, nbytes, g) for g in [ranks, *net.siblings(ranks)]]
    out = []
    for i in range(len(plans[0])):
        flows = [f for plan in plans for f in plan[i] if f[2] > 0]
        out.append([(f[0], f[1], f[3], f[2]) for f in flows])
    return out


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_moved_sibling_plans_equal_their_own_plans(algo):
    groups = {"p2p": [(0, 8), (0, 17)], "default": [(0, 8, 16, 24), (0, 1, 2, 3), (0, 9, 18, 27),
                                                    tuple(range(0, 32, 2))]}
    for kind in sorted(ALGORITHMS[algo].kinds):
        for group in groups["p2p" if algo == "p2p" else "default"]:
            net = FlowNetwork(ClusterLayout(H100, 8, H100.nic_gbps), load_builtin("h100"),
                              {"algo": algo, "sharp": True})
            net.set_simulated_ranks((0, 32))
            try:
                choice = net.choose(kind, 2**24, CommGroup(group))
            except ClusterSimError:
                continue                     # not available for this group
            got = net._phase_flows(choice, kind, 2.0**24, group)
            ref = reference_phase_flows(net, choice, kind, 2.0**24, group)
            assert len(got) == len(ref)
            for (u, v, salt, size), flows in zip(got, ref, strict=True):
                assert list(zip(u.tolist(), v.tolist(), salt.tolist(), size.tolist(),
                                strict=True)) == flows, (algo, kind, group)
