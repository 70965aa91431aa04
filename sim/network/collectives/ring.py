"""Ring: every rank sends to the next; pipelined, so all hops run at once.

Per rank, all_reduce moves 2(n-1)/n S, all_gather / reduce_scatter (n-1)/n S
(S the full buffer), broadcast / reduce S along a chain (nccl-tests PERFORMANCE.md).
Across domains there is one ring per channel, each leaving through a different rail.
"""

from __future__ import annotations

from sim.network.collectives.base import Algorithm, CollCtx, Plan, register, ring_order

PER_RANK = {"all_reduce": lambda n: 2 * (n - 1) / n, "all_gather": lambda n: (n - 1) / n,
            "reduce_scatter": lambda n: (n - 1) / n, "broadcast": lambda n: 1.0,
            "reduce": lambda n: 1.0}


def plan(ctx: CollCtx) -> Plan:
    c_n = ctx.channels
    nbytes = PER_RANK[ctx.kind](ctx.n) * ctx.nbytes / c_n
    chain = ctx.kind in ("broadcast", "reduce")
    flows = []
    for c in range(c_n):
        order = ring_order(ctx, c)
        hops = len(order) - 1 if chain else len(order)
        flows += [(ctx.v(order[i]), ctx.v(order[(i + 1) % len(order)]), nbytes, c)
                  for i in range(hops)]
    return [flows]


def steps(ctx: CollCtx) -> tuple[float, float]:
    """NCCL: nsteps = 2(n-1) for all_reduce, n-1 otherwise; inter steps scale with nodes."""
    mult = 2 if ctx.kind == "all_reduce" else 1
    total, inter = mult * (ctx.n - 1), mult * (ctx.n_domains - 1)
    return total - inter, inter


register(Algorithm("ring", frozenset(PER_RANK), ("LL", "LL128", "Simple"), plan, steps))
