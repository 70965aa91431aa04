"""Double binary tree all_reduce (NCCL 2.4+): a chain inside each domain, two binary
trees across domains, each tree carrying half the data, reduce up then broadcast down.

The second tree is the first shifted by one domain so that most leaves of one are inner
nodes of the other (Sanders et al., "Two-tree algorithms for full bandwidth broadcast,
reduction and scan", 2009, the scheme NCCL uses). Each channel roots its trees at a
different local rank so all rails carry traffic.
"""

from __future__ import annotations

import math

from sim.network.collectives.base import Algorithm, CollCtx, Plan, register


def _edges(m: int, shift: int) -> list[tuple[int, int]]:
    """(parent, child) domain indices of a heap-shaped binary tree over m domains."""
    return [((((i - 1) // 2) + shift) % m, (i + shift) % m) for i in range(1, m)]


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
            for p, ch in _edges(ctx.n_domains, t):
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
