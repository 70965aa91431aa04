"""NVLSTree: NVLS inside each domain, then a tree across domains per local rank.

After the in-switch reduce-scatter each local rank owns 1/k of the data and runs the
inter-domain tree on it through its own NIC, so every rail is used (NCCL 2.18+).
"""

from __future__ import annotations

import math

from sim.network.collectives.base import Algorithm, CollCtx, Plan, register
from sim.network.collectives.nvls import available, nvls_flows
from sim.network.collectives.tree import tree_edges


def plan(ctx: CollCtx) -> Plan:
    flows = []
    for ranks in ctx.domains:
        flows += nvls_flows(ctx, ranks, ctx.nbytes)
    k = ctx.local
    for j in range(k):
        heads = [d[j % len(d)] for d in ctx.domains]
        for t in (0, 1):
            for p, ch in tree_edges(ctx.n_domains, t):
                part = ctx.nbytes / (2 * k)
                flows += [(ctx.v(heads[ch]), ctx.v(heads[p]), part, 2 * j + t),
                          (ctx.v(heads[p]), ctx.v(heads[ch]), part, 2 * j + t)]
    return [flows]


def steps(ctx: CollCtx) -> tuple[float, float]:
    return 1, 2 * math.log2(max(1, ctx.n_domains))


register(Algorithm("nvlstree", frozenset({"all_reduce"}), ("Simple",), plan, steps,
                   available=lambda ctx: ctx.n_domains > 1 and available(ctx)))
