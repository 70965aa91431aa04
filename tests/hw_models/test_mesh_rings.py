"""Link-disjoint rings on a full mesh: every ring visits every GPU once, no directed link is
used twice, and there are as many as the complete digraph holds (Tillson 1980)."""

import pytest

from hw_models.mesh_rings import disjoint_ring_count, mesh_group_bw, mesh_rings


@pytest.mark.parametrize("k", range(2, 10))
def test_rings_are_hamiltonian_and_link_disjoint(k):
    rings = mesh_rings(k)
    assert len(rings) == disjoint_ring_count(k)
    arcs = [(r[i], r[(i + 1) % k]) for r in rings for i in range(k)]
    assert all(sorted(r) == list(range(k)) for r in rings)
    if k > 2:
        assert len(set(arcs)) == len(arcs)            # no directed link twice


def test_counts_follow_tillson():
    # K*_k splits into k-1 directed Hamiltonian cycles except k = 4, 6
    assert [disjoint_ring_count(k) for k in range(2, 9)] == [1, 2, 2, 4, 4, 6, 7]


def test_group_bandwidth_of_an_mi300x_node():
    # 448 GB/s over 7 xGMI links of 64 GB/s: 8 GPUs use all 7, 4 GPUs 2 rings, 2 GPUs 1 link
    assert mesh_group_bw(448, 8, 8) == pytest.approx(448)
    assert mesh_group_bw(448, 8, 4) == pytest.approx(128)
    assert mesh_group_bw(448, 8, 2) == pytest.approx(64)


@pytest.mark.parametrize("k, channels", [(8, 8), (8, 4), (4, 4), (2, 2)])
def test_channels_enter_and_leave_a_domain_on_distinct_gpus(k, channels):
    from hw_models.mesh_rings import ring_starts
    rings, starts = mesh_rings(k), ring_starts(k, channels)
    exits = [rings[c % len(rings)][rings[c % len(rings)].index(s) - 1]
             for c, s in enumerate(starts)]
    assert len(set(starts)) == channels and len(set(exits)) == channels
