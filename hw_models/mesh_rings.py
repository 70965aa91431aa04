"""Rings on a fully connected scale-up domain (xGMI, HCCS, Gaudi's on-die RoCE).

On a full mesh every GPU has one direct link to each of its n-1 peers, each with 1/(n-1)
of the GPU's scale-up bandwidth. One ring uses one outgoing link per GPU, so a collective
reaches the GPU's whole bandwidth only by running its channels on rings that share no
link: arc-disjoint directed Hamiltonian cycles of the group. RCCL builds its MI300X rings
that way ("Increase number of rings with XGMI connection", ROCm/rccl#72), and states that
fewer than 8 GPUs of a node reach only a fraction of the bandwidth because the links to
the GPUs left out stay idle (ROCm/rccl#1270, README "using less than 8 GPUs").

The complete digraph on k vertices splits into k-1 such cycles for every k except 4 and 6
(Tillson, "A Hamiltonian decomposition of K*_2m, 2m >= 8", J. Combin. Theory B 29, 1980;
the cases 4 and 6 have no decomposition), where k-2 is the most there is.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

# Full-mesh kinds of ``scale_up.kind`` (hw_models/topologies/scale_up.py).
MESH_KINDS = frozenset({"xgmi-mesh", "hccs-mesh", "roce-mesh", "nvlink-mesh"})


def disjoint_ring_count(k: int) -> int:
    """How many arc-disjoint directed Hamiltonian cycles k GPUs of a full mesh hold."""
    if k <= 1:
        return 0
    if k == 2:
        return 1            # 0 -> 1 -> 0: the pair's one link, both directions
    return k - 2 if k in (4, 6) else k - 1


@cache
def mesh_rings(k: int) -> tuple[tuple[int, ...], ...]:
    """``disjoint_ring_count(k)`` rings over local indices 0..k-1 that share no directed
    link (depth-first search; k <= 8 in every catalog system, found in milliseconds).
    Beyond 12 GPUs the stride rings i -> i + s, gcd(s, k) = 1, are used instead."""
    if k <= 2:
        return ((0, 1),) if k == 2 else ()
    if k > 12:
        from math import gcd
        return tuple(tuple((i * s) % k for i in range(k)) for s in range(1, k) if gcd(s, k) == 1)
    arcs = [[(0, (u + i) % k) for i in range(1, k)] for u in range(k)]
    return disjoint_cycles(arcs, disjoint_ring_count(k)) or ()


def disjoint_cycles(arcs: list[list[tuple[int, int]]], want: int, budget: int | None = None
                    ) -> tuple[tuple[int, ...], ...] | None:
    """``want`` arc-disjoint directed Hamiltonian cycles from vertex 0 of the digraph whose
    out-arcs of vertex u are ``arcs[u]``, as (key, v) pairs; None if there are none.
    Depth-first: each cycle tries first the arcs whose key is its preferred one (the keys
    in turn, e.g. a torus dimension and direction), then the rest in the listed order.
    ``budget``: at most that many search steps per call (None: unbounded)."""
    k, used, rings, steps = len(arcs), set(), [], [0]
    limit = float("inf") if budget is None else budget
    prefs = sorted({key for out in arcs for key, _ in out})

    def cycles(path: list[int], seen: set[int], pref) -> Iterator[list[int]]:
        steps[0] += 1
        if steps[0] > limit:
            return
        u = path[-1]
        if len(path) == k:
            if (u, 0) not in used and any(v == 0 for _, v in arcs[u]):
                yield path
            return
        for _, v in sorted(arcs[u], key=lambda a: a[0] != pref):
            if v not in seen and (u, v) not in used:
                seen.add(v)
                path.append(v)
                yield from cycles(path, seen, pref)
                path.pop()
                seen.discard(v)

    def search() -> bool:
        if len(rings) == want:
            return True
        for p in cycles([0], {0}, prefs[len(rings) % len(prefs)]):
            ring = [(p[i], p[(i + 1) % k]) for i in range(k)]
            used.update(ring)
            rings.append(tuple(p))
            if search():
                return True
            rings.pop()
            used.difference_update(ring)
            if steps[0] > limit:
                return False
        return False

    return tuple(rings) if search() else None


def mesh_group_bw(gb_s_per_gpu: float, domain_gpus: int, k: int) -> float:
    """GB/s per GPU that a ring collective of k GPUs of one full-mesh domain of
    ``domain_gpus`` can drive: its disjoint rings x one link (gb_s_per_gpu / (domain - 1))."""
    if k <= 1 or domain_gpus <= 1:
        return gb_s_per_gpu
    return gb_s_per_gpu * disjoint_ring_count(k) / (domain_gpus - 1)


@cache
def ring_starts(k: int, channels: int, rings: tuple[tuple[int, ...], ...] | None = None
                ) -> tuple[int, ...]:
    """Where channel c's ring enters a domain of k mesh GPUs (it leaves from the GPU before
    that one on its ring ``mesh_rings(k)[c % len]``) such that no two channels enter at,
    or leave from, the same GPU: each channel crosses domains on its own NIC (rail), as the
    rotated rings of a switched node do. Channels beyond k: c % k. ``rings``: other
    disjoint rings over the k GPUs (a torus group's, hw_models/torus_rings.py)."""
    rings = mesh_rings(k) if rings is None else rings
    if not rings or channels > k:
        return tuple(c % k for c in range(channels))
    pred = [{r[(i + 1) % k]: r[i] for i in range(k)} for r in rings]
    starts: list[int] = []

    def place(c: int) -> bool:
        if c == channels:
            return True
        before = pred[c % len(rings)]
        exits = {pred[j % len(rings)][s] for j, s in enumerate(starts)}
        for s in [(c + i) % k for i in range(k)]:
            if s not in starts and before[s] not in exits:
                starts.append(s)
                if place(c + 1):
                    return True
                starts.pop()
        return False

    return tuple(starts) if place(0) else tuple(c % k for c in range(channels))
