"""Recursive halving-doubling all_reduce (Thakur, Rabenseifner & Gropp, IJHPCA 2005).

log2 n reduce-scatter steps exchanging S/2, S/4, ... with the partner at distance
2^k, then the same steps reversed for the all-gather. Needs a power-of-two group.
Not in NCCL's own set: use it with ``--algo rhd``.
"""

from __future__ import annotations

import math

from sim.network.collectives.base import Algorithm, CollCtx, Plan, register


def plan(ctx: CollCtx) -> Plan:
    n, ranks = ctx.n, ctx.ranks
    halving = []
    for k in range(int(math.log2(n))):
        amount = ctx.nbytes / 2 ** (k + 1)
        halving.append([(ctx.v(ranks[i]), ctx.v(ranks[i ^ (1 << k)]), amount, k)
                        for i in range(n)])
    return halving + halving[::-1]


def steps(ctx: CollCtx) -> tuple[float, float]:
    total = 2 * math.log2(ctx.n)
    inter = 2 * math.log2(max(1, ctx.n_domains))
    return total - inter, inter


register(Algorithm("rhd", frozenset({"all_reduce"}), ("Simple",), plan, steps,
                   available=lambda ctx: ctx.n & (ctx.n - 1) == 0, tuned=False,
                   latency_key="ring"))
