"""Speed helpers of the flow model give what the plain definitions give."""

import numpy as np
import pytest

from hw_models import catalog
from hw_models.profile import load_builtin
from hw_models.routing import unique_ints
from sim.network.analytical import ClusterLayout
from sim.network.flow import FlowNetwork, _disjoint

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
