"""Double binary tree all_reduce (NCCL 2.4+): a chain inside each domain, two binary
trees across domains, each tree carrying half the data, reduce up then broadcast down.

The trees are NCCL's (src/graph/trees.cc, ncclGetBtree / ncclGetDtree): the first is the
bit-pattern binary tree over domain indices (odd indices are leaves, even ones inner),
the second its mirror (r -> m-1-r) for an even domain count m, or its shift by one for
an odd m, so each domain is an inner node of at most one tree and every NIC moves
about 2S per all-reduce, as a ring does (Sanders et al., "Two-tree algorithms for full
bandwidth broadcast, reduction and scan", 2009). Each channel roots its trees at a
different local rank so all rails carry traffic.
"""

from __future__ import annotations

import math

from sim.network.collectives.base import Algorithm, CollCtx, Plan, register


def _btree_parent(m: int, r: int) -> int:
    """Parent of rank r in NCCL's binary tree over m ranks (-1 for the root, rank 0)."""
    if r == 0:
        return -1
    bit = 1
    while bit < m and not bit & r:
        bit <<= 1
    up = (r ^ bit) | (bit << 1)
    return r ^ bit if up >= m else up


def tree_edges(m: int, tree: int) -> list[tuple[int, int]]:
    """(parent, child) domain indices of tree 0 or 1 of NCCL's double binary tree."""
    if tree == 0:
        return [(_btree_parent(m, r), r) for r in range(1, m)]
    if m % 2:                                # odd: the first tree shifted by one
        return [((p + 1) % m, (c + 1) % m) for p, c in tree_edges(m, 0)]
    return [(m - 1 - p, m - 1 - c) for p, c in tree_edges(m, 0)]   # even: mirrored


def plan(ctx: CollCtx) -> Plan:
    c_n = ctx.channels
    part = ctx.nbytes / (2 * c_n)            # per tree, per channel
    flows = []
    for c in range(c_n):
        heads = []
        for ranks in ctx.domains:            # chain inside the domain, both directions
            k = len(ranks)
            chain = [ranks[(c + i) % k] for i in range(k)]
            heads.append(chain[0])
            for a, b in zip(chain, chain[1:], strict=False):
                flows += [(ctx.v(b), ctx.v(a), 2 * part, c), (ctx.v(a), ctx.v(b), 2 * part, c)]
        for t in (0, 1):
            for p, ch in tree_edges(ctx.n_domains, t):
                flows += [(ctx.v(heads[ch]), ctx.v(heads[p]), part, 2 * c + t),
                          (ctx.v(heads[p]), ctx.v(heads[ch]), part, 2 * c + t)]
    return [flows]


def steps(ctx: CollCtx) -> tuple[float, float]:
    """NCCL: latency = base + 2((nRanks/nNodes - 1) intra + log2(nNodes) inter)."""
    return 2 * (ctx.local - 1), 2 * math.log2(max(1, ctx.n_domains))


# NCCL's tree is its inter-node algorithm; inside one node it would be a bare chain,
# which moves 2S per GPU port against the ring's 2(n-1)/n S, so it needs >1 domain.
register(Algorithm("tree", frozenset({"all_reduce"}), ("LL", "LL128", "Simple"), plan, steps,
                   available=lambda ctx: ctx.n_domains > 1))
