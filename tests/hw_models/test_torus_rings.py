"""Disjoint rings on a torus domain: every ring visits every chip of the group once, hops
only between torus neighbours, uses no directed link twice, and a group gets one link's
bandwidth per ring (hand-counted from the torus' links)."""

import pytest

from hw_models.torus_rings import torus_dims, torus_group_bw, torus_link_gb_s, torus_rings


def neighbours(dims, a, b):
    """a and b differ by one step (mod the side) along exactly one axis (row-major)."""
    ca, cb, pa, pb = [], [], a, b
    for d in reversed(dims):
        ca.append(pa % d)
        cb.append(pb % d)
        pa, pb = pa // d, pb // d
    diff = [(x, y, d) for x, y, d in zip(ca, cb, reversed(dims), strict=True) if x != y]
    return len(diff) == 1 and (diff[0][0] - diff[0][1]) % diff[0][2] in (1, diff[0][2] - 1)


CASES = [((4, 4), (0, 1, 2, 3)), ((4, 4), (0, 4, 8, 12)), ((4, 4), tuple(range(8))),
         ((4, 4), tuple(range(16))), ((2, 2, 2), tuple(range(8))), ((4, 2), tuple(range(8))),
         ((4, 4, 4), tuple(range(16))), ((8, 8), tuple(range(64))), ((16, 16), tuple(range(256)))]


@pytest.mark.parametrize("dims, pos", CASES)
def test_rings_are_hamiltonian_neighbour_hops_and_link_disjoint(dims, pos):
    k, rings = len(pos), torus_rings(dims, pos)
    assert rings
    arcs = [(r[i], r[(i + 1) % k]) for r in rings for i in range(k)]
    assert all(sorted(r) == list(range(k)) for r in rings)
    assert len(set(arcs)) == len(arcs)
    assert all(neighbours(dims, pos[a], pos[b]) for a, b in arcs)


def test_domain_shapes_follow_the_builder():
    # 8 v5p chips (3D) -> 2x2x2, 8 v6e chips (2D) -> 4x2, a trn2 node -> 4x4
    assert torus_dims(8, 3) == (2, 2, 2)
    assert torus_dims(8, 2) == (4, 2)
    assert torus_dims(16, 2) == (4, 4)


def test_line_along_one_dimension():
    # 4 trn2 chips along one side of the 4x4, with its wraparound: a ring each way,
    # 2 of the chip's 4 links of 640/4 = 160 GB/s; along the other axis (a column) the same
    assert torus_link_gb_s(640, 2) == 160
    assert torus_group_bw(640, (4, 4), (0, 1, 2, 3)) == pytest.approx(320)
    assert torus_group_bw(640, (4, 4), (0, 4, 8, 12)) == pytest.approx(320)
    # a pair of neighbours: one ring over their one link; a partial line of 3 (no link
    # between its ends): no ring of neighbour hops, one link's bandwidth
    assert len(torus_rings((4, 4), (0, 1))) == 1
    assert torus_rings((4, 4), (0, 1, 2)) == ()
    assert torus_group_bw(640, (4, 4), (0, 1, 2)) == pytest.approx(160)


def test_two_dimensional_groups():
    # the whole 4x4: one ring per direction per dimension, 4 x 160 = the chip's 640 GB/s
    assert torus_group_bw(640, (4, 4), tuple(range(16))) == pytest.approx(640)
    # two rows of the 4x4 (a 4-ring x a 2-line, the cube graph): 3 links per chip but no
    # 3 disjoint Hamiltonian rings exist (exhaustive search), so 2 x 160
    assert torus_group_bw(640, (4, 4), tuple(range(8))) == pytest.approx(320)
    # 8 v5p chips as a 2x2x2 cube: 3 of the 6 links of 100 GB/s exist, 2 rings use them
    assert torus_group_bw(600, (2, 2, 2), tuple(range(8))) == pytest.approx(200)
    # beyond 16 chips one ring and its reverse: a 16x16 v6e pod gets 2 of its 4 links
    assert torus_group_bw(448, (16, 16), tuple(range(256))) == pytest.approx(224)
