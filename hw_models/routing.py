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

``batch_routes`` runs the searches of many pairs together (all flows of a collective
phase): each side's visited set is one sorted array of (pair, vertex) keys, and every
level, the walk back and each hop are a handful of array operations for all pairs.
"""

from __future__ import annotations

import numpy as np


def unique_ints(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer array. np.unique does the same but, in numpy 2,
    through a hash table that is ~10x slower than sorting for int64 arrays of this kind."""
    s = np.sort(x, kind="stable")          # timsort: fast on the runs (pair-major keys)
    if len(s) < 2:
        return s
    keep = np.empty(len(s), bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


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
        nb = unique_ints(ends[links[_csr_ranges(ptr, frontier)]])
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
            layer = unique_ints(preds[(stamp[0, preds] == gen) & (dist[0, preds] == k)])
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


_GOLD, _MUL = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9)


def mix_v(*xs: np.ndarray) -> np.ndarray:
    """hw_models.topology._mix (splitmix64) over arrays, element by element."""
    h = np.full(len(xs[0]), _GOLD, dtype=np.uint64)
    for x in xs:
        h = (h ^ np.asarray(x).astype(np.uint64)) * _MUL
        h ^= h >> np.uint64(31)
    return h


def _member(keys: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found, index) of each key in the sorted array ``table``."""
    idx = np.minimum(np.searchsorted(table, keys), max(len(table) - 1, 0))
    found = table[idx] == keys if len(table) else np.zeros(len(keys), bool)
    return found, idx


class _Ball:
    """Visited (pair, vertex) keys of one side of many searches, sorted, with distances,
    and the keys found at each level."""

    def __init__(self, keys: np.ndarray):
        self.keys, self.dist = np.sort(keys), np.zeros(len(keys), np.int64)
        self.levels = [self.keys]

    def add(self, keys: np.ndarray, level: int, pos: np.ndarray | None = None) -> None:
        """Insert sorted keys not yet present (a merge, not a re-sort); ``pos``: where they
        go, when already searched."""
        if pos is None:
            pos = np.searchsorted(self.keys, keys)
        self.keys = np.insert(self.keys, pos, keys)
        self.dist = np.insert(self.dist, pos, level)
        self.levels.append(keys)

    def add_unseen(self, keys: np.ndarray, level: int) -> np.ndarray:
        """Insert those of the sorted distinct ``keys`` not yet present; return them. One
        search gives both which are new and where they go (``add`` after ``level``
        searched twice)."""
        pos = np.searchsorted(self.keys, keys)
        if len(self.keys):
            seen = self.keys[np.minimum(pos, len(self.keys) - 1)] == keys
            keys, pos = keys[~seen], pos[~seen]
        self.add(keys, level, pos)
        return keys

    def level(self, keys: np.ndarray) -> np.ndarray:
        """Distance of each key, -1 where not visited."""
        found, idx = _member(keys, self.keys)
        return np.where(found, self.dist[idx], -1)


def batch_routes(sp: ShortestPaths, n: int, us: np.ndarray, vs: np.ndarray,
                 salts: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """ECMP routes (link ids) of many vertex pairs at once, each the one ``ShortestPaths``
    gives: the searches of all pairs advance together, a level per step, as array
    operations. Returns the routes and a mask of unreachable pairs (empty route)."""
    p = len(us)
    pair_ids = np.arange(p, dtype=np.int64)
    ball = [_Ball(pair_ids * n + us), _Ball(pair_ids * n + vs)]
    front = [pair_ids * n + us, pair_ids * n + vs]
    d = np.where(us == vs, 0, -1)
    r_u = np.zeros(p, np.int64)
    active = us != vs
    meet: list[np.ndarray] = []
    radius, side = [0, 0], 0
    for s in (0, 1):
        front[s] = front[s][active]
    while active.any():
        radius[side] += 1
        new = ball[side].add_unseen(_expand(sp, side, front[side], n), radius[side])
        hit = new[ball[1 - side].level(new) >= 0]
        met = unique_ints(hit // n)
        d[met], r_u[met] = radius[0] + radius[1], radius[0]
        meet.append(hit)
        alive = np.zeros(p, bool)
        alive[new // n] = True
        active &= alive                      # met, or a ball that stopped growing
        active[met] = False
        for s in (0, 1):
            front[s] = front[s][active[front[s] // n]] if s != side else new[active[new // n]]
        side = 1 - side
    meet_all = np.concatenate(meet) if meet else np.zeros(0, np.int64)
    on_path = _back_track(sp, ball[0], meet_all, r_u, n)
    return _walk(sp, n, us, vs, salts, d, r_u, on_path, ball[1]), d < 0


def _expand(sp: ShortestPaths, side: int, keys: np.ndarray, n: int) -> np.ndarray:
    links, ptr = (sp.out_links, sp.out_ptr) if side == 0 else (sp.in_links, sp.in_ptr)
    ends = sp.dst if side == 0 else sp.src
    pair, x = keys // n, keys % n
    lens = ptr[x + 1] - ptr[x]
    nb = ends[links[_csr_ranges(ptr, x)]]
    return unique_ints(np.repeat(pair, lens) * n + nb)


def _back_track(sp: ShortestPaths, fwd: _Ball, meet: np.ndarray, r_u: np.ndarray,
                n: int) -> _Ball:
    """Vertices on a shortest path, on u's side of the meeting layer, with u-distances:
    level by level back from the meeting layer, the vertices of u's ball one level
    nearer to u with an out-link into the layer."""
    on = _Ball(np.zeros(0, np.int64))
    meet_level = r_u[meet // n]
    layer = np.zeros(0, np.int64)
    for lvl in range(int(r_u.max(initial=0)), 0, -1):
        layer = unique_ints(np.concatenate([layer, meet[meet_level == lvl]]))
        on.add(layer, lvl)
        cand = fwd.levels[lvl - 1]
        cand = cand[r_u[cand // n] >= lvl]
        pair, y = cand // n, cand % n
        lens = sp.out_ptr[y + 1] - sp.out_ptr[y]
        succ = np.repeat(pair, lens) * n + sp.dst[sp.out_links[_csr_ranges(sp.out_ptr, y)]]
        hit, _ = _member(succ, layer)
        layer = unique_ints(np.repeat(cand, lens)[hit])
    return on


def _walk(sp: ShortestPaths, n: int, us, vs, salts, d, r_u, on_path: _Ball, bwd: _Ball
          ) -> list[np.ndarray]:
    """Every pair one hop at a time; each hop is an ECMP hash over the next hops that stay
    on a shortest path, listed in out-link order (by head vertex, then link id)."""
    p = len(us)
    cur = us.copy()
    hops = np.zeros((p, max(int(d.max(initial=0)), 0)), np.int64)
    for t in range(hops.shape[1]):
        go = np.flatnonzero(d > t)
        near_u = t < r_u[go]
        g1, c1 = _hops_out(sp, n, go[near_u], cur, on_path, t + 1)
        g2, c2 = _hops_in(sp, n, go[~near_u], cur, bwd, d - t - 1)
        g, cand = np.concatenate([g1, g2]), np.concatenate([c1, c2])
        order = np.lexsort((cand, sp.dst[cand], g))          # by pair, head vertex, link id
        g, cand = g[order], cand[order]
        count = np.bincount(g, minlength=p)[go]
        first = np.cumsum(count) - count
        h = mix_v(us[go], vs[go], cur[go], salts[go])
        pick = cand[first + (h % count.astype(np.uint64)).astype(np.int64)]
        hops[go, t] = pick
        cur[go] = sp.dst[pick]
    return [hops[i, :max(int(d[i]), 0)] for i in range(p)]


def _hops_out(sp: ShortestPaths, n: int, go: np.ndarray, cur: np.ndarray, on_path: _Ball,
              level: int) -> tuple[np.ndarray, np.ndarray]:
    """On u's side: out-links of the current vertex into the path's next level."""
    x = cur[go]
    lens = sp.out_ptr[x + 1] - sp.out_ptr[x]
    out = sp.out_links[_csr_ranges(sp.out_ptr, x)]
    g = np.repeat(go, lens)
    ok = on_path.level(g * n + sp.dst[out]) == level
    return g[ok], out[ok]


def _hops_in(sp: ShortestPaths, n: int, go: np.ndarray, cur: np.ndarray, bwd: _Ball,
             need: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """On v's side: in-links, from the current vertex, of the vertices one step nearer to
    v (a spine's out-degree is the number of leaves; the few vertices near v are cheaper)."""
    gs, cs = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    want = np.full(len(need), -1)
    want[go] = need[go]
    for lvl in unique_ints(need[go]).tolist():
        keys = bwd.levels[lvl]
        keys = keys[want[keys // n] == lvl]
        pair, z = keys // n, keys % n
        lens = sp.in_ptr[z + 1] - sp.in_ptr[z]
        links = sp.in_links[_csr_ranges(sp.in_ptr, z)]
        g = np.repeat(pair, lens)
        ok = sp.src[links] == cur[g]
        gs.append(g[ok])
        cs.append(links[ok])
    return np.concatenate(gs), np.concatenate(cs)
