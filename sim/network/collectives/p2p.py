"""Point-to-point send/recv: one flow, the latency of one ring step."""

from __future__ import annotations

from sim.network.collectives.base import Algorithm, CollCtx, Plan, register


def plan(ctx: CollCtx) -> Plan:
    a, b = ctx.ranks[0], ctx.ranks[-1]
    return [[(ctx.v(a), ctx.v(b), ctx.nbytes, 0)]]


def steps(ctx: CollCtx) -> tuple[float, float]:
    return (1, 0) if ctx.n_domains == 1 else (0, 1)


register(Algorithm("p2p", frozenset({"sendrecv"}), ("LL", "LL128", "Simple"), plan, steps,
                   latency_key="ring"))
