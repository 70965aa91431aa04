"""Max-min fair sharing of link bandwidth among flows.

``maxmin_rates`` is progressive filling (Bertsekas & Gallager, Data Networks, 6.5.2):
all unfrozen flows grow at the same rate until a link saturates; flows through it
freeze; repeat. Each round is two ``np.bincount`` passes over the flow-link incidence,
so a round costs O(total path length), and the number of rounds is the number of
distinct bottleneck levels (a handful for collectives), not the number of flows.
A flow may carry a weight w: it stands for w identical flows on the same path (each
gets the returned rate, the path's links carry w times it). ``Fabric``
(sim/network/fabric.py) drives it over a simulation's flows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

REL_EPS = 1e-9
_min = np.minimum.reduce                     # ndarray.min() without its wrapper


def maxmin_rates(paths: Sequence[np.ndarray], cap: np.ndarray,
                 weight: np.ndarray | None = None) -> np.ndarray:
    """Max-min fair rate (bytes/s) of each flow; ``paths`` are link-id arrays into ``cap``.

    A flow with an empty path (source == destination) gets an infinite rate.
    """
    n = len(paths)
    lens = np.fromiter((len(p) for p in paths), dtype=np.int64, count=n)
    links = np.concatenate(paths).astype(np.int64) if lens.sum() else np.zeros(0, np.int64)
    return solve(np.repeat(np.arange(n), lens), links, n, cap,
                 np.ones(n) if weight is None else np.asarray(weight, float))


def _ranges(ptr: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Concatenated index ranges ptr[i]:ptr[i+1] for i in ids (CSR rows, vectorised)."""
    start, lens = ptr[ids], ptr[ids + 1] - ptr[ids]
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    shift = np.repeat(start - np.cumsum(lens) + lens, lens)
    return shift + np.arange(total)


def solve(row: np.ndarray, links: np.ndarray, n: int, cap: np.ndarray,
          weight: np.ndarray, tolerance: float = 0.0, coef: np.ndarray | None = None
          ) -> np.ndarray:
    """Progressive filling on an incidence list: flow ``row[k]`` crosses link ``links[k]``
    carrying the fraction ``coef[k]`` of its rate (1 for a single path; less where a
    flow is split over several paths).

    Per-link load is kept up to date by subtracting the flows that freeze, so a round
    costs O(links in use + incidences of the flows it freezes), not O(all incidences):
    a solve is O(rounds x links + total path length). With ``tolerance`` d > 0, links
    whose fair share is within (1 + d) of the round's smallest saturate in the same round
    (their flows get that smallest share): rates stay feasible and are at most a factor
    (1 + d) low, and far fewer rounds are needed when many levels lie close together.
    """
    rate = np.zeros(n)
    if n == 0:
        return rate
    # Dense renumbering of the links in use (ids are < len(cap)): no sort needed. The
    # scratch arrays over all links are kept between solves (``present`` is left all False).
    present, index = _scratch(len(cap))
    present[links] = True
    used_links = np.flatnonzero(present)
    present[used_links] = False
    n_links = len(used_links)
    index[used_links] = np.arange(n_links)
    col = index[links]
    by_link = np.argsort(col, kind="stable")
    l_ptr = np.zeros(n_links + 1, dtype=np.int64)
    np.cumsum(np.bincount(col, minlength=n_links), out=l_ptr[1:])
    l_flow = row[by_link]
    monotone = len(row) < 2 or bool(np.all(row[1:] >= row[:-1]))   # built flow by flow
    by_flow = np.arange(len(row)) if monotone else np.argsort(row, kind="stable")
    f_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=n), out=f_ptr[1:])
    f_link = col[by_flow]
    coef = np.ones(len(row)) if coef is None else np.asarray(coef, float)
    f_coef = coef[by_flow]
    rem = cap[used_links].astype(float)
    tol = REL_EPS * rem
    load = np.bincount(col, weights=weight[row] * coef, minlength=n_links)
    users = np.bincount(col, minlength=n_links)        # active flows per link
    f_len = np.diff(f_ptr)
    active = f_len > 0
    rate[~active] = np.inf
    level, left = 0.0, int(active.sum())
    slot = np.zeros(n, dtype=np.int64)
    while left:
        live = np.flatnonzero(users)
        rem_live, load_live = rem[live], load[live]
        share = rem_live / load_live
        inc = _min(share)
        level += inc
        rem_live -= inc * load_live
        rem[live] = rem_live
        sat = live[(rem_live <= tol[live]) | (share <= inc * (1.0 + tolerance))]
        cand = l_flow[_ranges(l_ptr, sat)]
        cand = cand[active[cand]]
        slot[cand] = np.arange(len(cand))        # dedupe without sorting: keep last copy
        flows = cand[slot[cand] == np.arange(len(cand))]
        rate[flows] = level
        active[flows] = False
        left -= len(flows)
        inc_idx = _ranges(f_ptr, flows)
        hit = f_link[inc_idx]
        w_hit = np.repeat(weight[flows], f_len[flows]) * f_coef[inc_idx]
        load -= np.bincount(hit, weights=w_hit, minlength=n_links)
        users -= np.bincount(hit, minlength=n_links)
    return rate


_SCRATCH: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _scratch(n_links: int) -> tuple[np.ndarray, np.ndarray]:
    """(all-False mark, index) arrays over ``n_links`` links, shared by the solves of a
    topology of that size: allocated once, not per solve."""
    hit = _SCRATCH.get(n_links)
    if hit is None:
        hit = _SCRATCH[n_links] = (np.zeros(n_links, dtype=bool),
                                   np.zeros(n_links, dtype=np.int64))
    return hit
