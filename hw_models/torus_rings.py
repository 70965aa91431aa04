"""Rings on a torus scale-up domain (TPU ICI, Trainium NeuronLink).

A torus chip has two links per dimension (one per neighbour; a side of 2 has one link), each
with 1/(2 x dims) of the chip's bandwidth. A ring collective drives one outgoing link per
chip, so, as on a full mesh (hw_models/mesh_rings.py), a group reaches more bandwidth only
by running its channels on rings that share no directed link. AWS Neuron runs its intra-node
ring collectives on the trn2 2D torus (Neuron runtime docs, "Intra-node Collective
Communications with AWS Neuron": Ring, Mesh, KangaRing and RDH algorithms on the 2D Torus);
TPU/XLA's ICI algorithms are not published in that detail, and the same rings along the
spanned torus dimensions, one per direction, are assumed for TPU v5p and v6e.

Both fidelities use the rings found here: the flow model runs one channel per ring, the
analytical model gives the group one link's bandwidth per ring. What a group gets:
a full line of k > 2 chips with its wraparound, 2 rings (both directions); a pair, 1 ring
over its one link; a partial line of more than 2 (no link between its ends) or chips that
are not neighbours, no ring of neighbour hops: the plain ring over shortest paths, whose way
back crosses the line's links in reverse, one link's bandwidth; a sub-torus, up to one ring per direction
per spanned dimension, as many as an exhaustive search finds: 2 on a 2x2x2 cube or a 4x2
(their 3 links per chip hold no 3 disjoint rings), 4 on a 4x4. Groups of more than 16
chips get 2 rings, one found by the search and its reverse (a search for more takes
seconds there): an under-estimate for 2-D and 3-D groups that hold 4 or 6. Beyond 512
chips no search runs: one link's bandwidth, the plain ring over shortest paths.
"""

from __future__ import annotations

import math
from functools import cache

from hw_models.mesh_rings import disjoint_cycles
from hw_models.topologies.torus import torus_shape

_BUDGET = 200_000   # search steps per attempted ring count
_HUGE = 512         # beyond 512 chips no search: one link's bandwidth (the plain ring)
_LARGE = 16         # beyond 16 chips: one ring found, and its reverse (a full search takes seconds)


def torus_dims(domain_gpus: int, ndims: int) -> tuple[int, ...]:
    """The torus sides of one scale-up domain, as the topology builder lays it out."""
    return tuple(torus_shape(domain_gpus, ndims))


def _neighbours(dims: tuple[int, ...], pos: int) -> list[tuple[int, int]]:
    """(axis-direction key, neighbour position) of a chip, in row-major order (the builder's)."""
    strides = [math.prod(dims[i + 1:]) for i in range(len(dims))]
    out = []
    for axis in range(len(dims) - 1, -1, -1):        # fastest-varying axis first
        d, s = dims[axis], strides[axis]
        c = (pos // s) % d
        steps = (1,) if d == 2 else (1, -1)
        for sign in steps:
            out.append((2 * axis + (sign < 0), pos + (((c + sign) % d) - c) * s))
    return out


def _out_arcs(dims: tuple[int, ...], positions: tuple[int, ...]) -> list[list[tuple[int, int]]]:
    index = {p: i for i, p in enumerate(positions)}
    return [[(key, index[q]) for key, q in _neighbours(dims, p) if q in index]
            for p in positions]


@cache
def torus_rings(dims: tuple[int, ...], positions: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Arc-disjoint rings over a group of chips at ``positions`` (row-major places in a torus
    of sides ``dims``), as local indices 0..k-1 into ``positions``. A pair has one ring.
    Empty when the group's links hold no ring (chips not adjacent): the caller then runs
    the plain ring over the shortest paths."""
    k = len(positions)
    if k < 2:
        return ()
    arcs = _out_arcs(dims, positions)
    if k == 2:
        return ((0, 1),) if any(v == 1 for _, v in arcs[0]) else ()
    if k > _HUGE:
        return ()       # a depth-first search this deep would exceed Python's recursion limit
    if k > _LARGE:
        # one Hamiltonian ring and the same ring backwards: a ring and its reverse share no
        # directed link (k > 2), so a large group gets at least its two directions
        found = disjoint_cycles(arcs, 1, _BUDGET)
        return found + ((0, *found[0][:0:-1]),) if found else ()
    for want in range(min(len(a) for a in arcs), 0, -1):
        found = disjoint_cycles(arcs, want, _BUDGET)
        if found:
            return found
    return ()


def torus_link_gb_s(gb_s_per_gpu: float, ndims: int) -> float:
    """One torus link's GB/s per direction: the chip's bandwidth over its 2 x dims links."""
    return gb_s_per_gpu / (2 * ndims)


def torus_group_bw(gb_s_per_gpu: float, dims: tuple[int, ...], positions: tuple[int, ...]
                   ) -> float:
    """GB/s per chip that a ring collective over the chips at ``positions`` drives: one
    link per disjoint ring (one link when the group holds no ring: its chips are not
    neighbours and the ring's hops share the paths between them)."""
    link = torus_link_gb_s(gb_s_per_gpu, len(dims))
    return link * max(1, len(torus_rings(dims, positions)))
