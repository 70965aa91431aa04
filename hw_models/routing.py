"""Shortest-path next hops between two vertices by bidirectional breadth-first search.

ECMP routing needs, at every vertex of a path from u to v, the out-links that stay on
a shortest u-v path. A full BFS from v answers that for every u, but costs O(V + E)
per destination and V floats of memory each: at 16k GPUs (35k vertices, 131k links)
that is 4 ms and 280 kB per destination, minutes and gigabytes for a whole cluster.

Here one search grows a ball around u (out-links) and one around v (in-links), a
level at a time, until they meet: with radii r_u and r_v the distance is
D = r_u + r_v, and the vertices that meet (at u-distance r_u, v-distance r_v) are a
cut of every shortest path. Next hops on u's side are the out-neighbours that lie on
a shortest path (found by walking back from the cut); on v's side, the out-neighbours
one step closer to v. The hops are the same links, in the same order, as a full BFS
gives, and the balls of a fat-tree's route are a few hundred vertices.
"""

from __future__ import annotations

import numpy as np


def _csr_ranges(ptr: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Concatenated ranges ptr[i]:ptr[i+1] for i in ids."""
    start, lens = ptr[ids], ptr[ids + 1] - ptr[ids]
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    return np.repeat(start - np.cumsum(lens) + lens, lens) + np.arange(total)


class ShortestPaths:
    """Shortest-path DAG queries on a directed graph of ``n`` vertices and links
    ``src[k] -> dst[k]``; ``out_links``/``out_ptr`` list each vertex's out-links (CSR)."""

    def __init__(self, n: int, src: np.ndarray, dst: np.ndarray, out_links: np.ndarray,
                 out_ptr: np.ndarray):
        self.src, self.dst = src, dst
        self.out_links, self.out_ptr = out_links, out_ptr
        self.in_links = np.lexsort((src, dst))
        self.in_ptr = np.searchsorted(dst[self.in_links], np.arange(n + 1))
        # Per-search marks: a vertex's entry is valid when its stamp equals the search id,
        # so no array is cleared between searches.
        self._gen = 0
        self._stamp = np.zeros((3, n), dtype=np.int64)   # seen from u, seen from v, on path
        self._dist = np.zeros((2, n), dtype=np.int64)    # from u, to v

    def _grow(self, side: int, frontier: np.ndarray, level: int) -> np.ndarray:
        links = self.out_links if side == 0 else self.in_links
        ptr = self.out_ptr if side == 0 else self.in_ptr
        ends = self.dst if side == 0 else self.src
        nb = np.unique(ends[links[_csr_ranges(ptr, frontier)]])
        new = nb[self._stamp[side, nb] != self._gen]
        self._stamp[side, new] = self._gen
        self._dist[side, new] = level
        return new

    def search(self, u: int, v: int) -> tuple[int, int] | None:
        """Mark the shortest u-v paths; (distance, u-side radius), or None if v is unreachable."""
        self._gen += 1
        gen, stamp, dist = self._gen, self._stamp, self._dist
        stamp[0, u] = stamp[1, v] = gen
        dist[0, u] = dist[1, v] = 0
        if u == v:
            return 0, 0
        fr = [np.array([u]), np.array([v])]
        radius = [0, 0]
        while True:
            side = 0 if len(fr[0]) <= len(fr[1]) else 1
            if len(fr[side]) == 0:
                return None
            radius[side] += 1
            fr[side] = self._grow(side, fr[side], radius[side])
            meet = fr[side][stamp[1 - side, fr[side]] == gen]
            if len(meet):
                break
        # The meeting vertices sit at u-distance radius[0] and v-distance radius[1] (the
        # balls did not meet one level earlier, so D = radius[0] + radius[1]).
        layer = meet
        stamp[2, layer] = gen
        for k in range(radius[0] - 1, -1, -1):          # walk back to u on u's side
            preds = self.src[self.in_links[_csr_ranges(self.in_ptr, layer)]]
            layer = np.unique(preds[(stamp[0, preds] == gen) & (dist[0, preds] == k)])
            stamp[2, layer] = gen
        return radius[0] + radius[1], radius[0]

    def next_hops(self, x: int, level: int, d: int, r_u: int) -> np.ndarray:
        """Out-links of x (at u-distance ``level`` on a shortest path) that stay on one."""
        out = self.out_links[self.out_ptr[x]:self.out_ptr[x + 1]]
        z = self.dst[out]
        gen = self._gen
        if level < r_u:
            ok = (self._stamp[2, z] == gen) & (self._stamp[0, z] == gen) & (self._dist[0, z] == level + 1)
        else:
            ok = (self._stamp[1, z] == gen) & (self._dist[1, z] == d - level - 1)
        return out[ok]
