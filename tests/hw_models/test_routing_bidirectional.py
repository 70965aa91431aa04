"""Bidirectional-search ECMP routes equal the routes of a full BFS from the destination."""

import numpy as np
import pytest
from scipy.sparse.csgraph import shortest_path

from hw_models import catalog
from hw_models.errors import ClusterSimError
from hw_models.topology import GraphBuilder, Topology, _mix, build_topology

H100 = catalog.system("dgx-h100")
A100 = catalog.system("dgx-a100")


def bfs_route(topo, a: int, b: int, salt: int) -> np.ndarray:
    """Reference: distances to b from a full BFS on reversed links; at each vertex the
    out-links one step closer, hashed as ECMP does."""
    u, v = int(topo.gpu_vertex[a]), int(topo.gpu_vertex[b])
    dist = shortest_path(topo._rev, unweighted=True, indices=v)
    a_v, b_v, hops = u, v, []
    while u != v:
        out = topo._out_links[topo._out_ptr[u]:topo._out_ptr[u + 1]]
        nxt = out[dist[topo.dst[out]] == dist[u] - 1]
        link = int(nxt[_mix(a_v, b_v, u, salt) % len(nxt)]) if len(nxt) > 1 else int(nxt[0])
        hops.append(link)
        u = int(topo.dst[link])
    return np.asarray(hops, dtype=np.int64)


CONFIGS = [
    (H100, 16, {}),
    (H100, 16, {"topology": "fat-tree", "oversubscription": 4}),
    (H100, 16, {"tiers": 3, "pod_leaves": 2, "leaf_down": 4}),
    (H100, 8, {"topology": "multi-plane", "planes": 2}),
    (H100, 4, {"topology": "torus", "dims": [4, 8]}),
    (A100, 12, {"oversubscription": 2}),
]


@pytest.mark.parametrize(("system", "nodes", "cfg"), CONFIGS)
def test_routes_equal_full_bfs(system, nodes, cfg):
    topo = build_topology(system, nodes, cfg)
    rng = np.random.default_rng(7)
    pairs = rng.integers(0, topo.n_gpus, size=(150, 2))
    for (a, b), salt in zip(pairs.tolist(), rng.integers(0, 8, 150).tolist(), strict=True):
        assert np.array_equal(topo.route(a, b, salt), bfs_route(topo, a, b, salt)), (a, b, salt)


def test_unreachable_pair_is_one_clear_error():
    b = GraphBuilder()
    g0, g1 = b.vertex("gpu"), b.vertex("gpu")
    b.links.append((g0, g1, 1e9, 1e-6, "network"))          # one direction only
    topo = Topology("oneway", b, [g0, g1], 1, 1)
    assert len(topo.route(0, 1)) == 1
    with pytest.raises(ClusterSimError, match="no path from rank 1 to rank 0"):
        topo.route(1, 0)


@pytest.mark.parametrize(("system", "nodes", "cfg"), CONFIGS)
def test_batched_routes_equal_single_routes(system, nodes, cfg):
    topo = build_topology(system, nodes, cfg)
    rng = np.random.default_rng(11)
    a, b = rng.integers(0, topo.n_gpus, size=(2, 400))
    b[:5] = a[:5]                                            # same-vertex pairs: empty route
    salts = rng.integers(0, 8, 400)
    us, vs = topo.gpu_vertex[a], topo.gpu_vertex[b]
    got = build_topology(system, nodes, cfg).routes_v(us, vs, salts)
    for i in range(400):
        assert np.array_equal(got[i], topo.route(int(a[i]), int(b[i]), int(salts[i]))), i


def test_batched_unreachable_pair_is_one_clear_error():
    b = GraphBuilder()
    g0, g1 = b.vertex("gpu"), b.vertex("gpu")
    b.links.append((g0, g1, 1e9, 1e-6, "network"))
    topo = Topology("oneway", b, [g0, g1], 1, 1)
    assert [len(r) for r in topo.routes_v(np.array([g0]), np.array([g1]), np.array([0]))] == [1]
    with pytest.raises(ClusterSimError, match="no path"):
        topo.routes_v(np.array([g0, g1]), np.array([g1, g0]), np.array([0, 0]))
    same = topo.routes_v(np.array([g0, g1]), np.array([g0, g1]), np.array([1, 1]))
    assert [len(r) for r in same] == [0, 0]
