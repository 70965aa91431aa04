"""Pairwise all_to_all: n-1 rounds, in round k rank i sends S/n to rank i+k (MPI's
pairwise exchange). Fewer flows at once than direct, more latency."""

from __future__ import annotations

from sim.network.collectives.base import Algorithm, CollCtx, Plan, register


def plan(ctx: CollCtx) -> Plan:
    n, part = ctx.n, ctx.nbytes / ctx.n
    return [[(ctx.v(ctx.ranks[i]), ctx.v(ctx.ranks[(i + k) % n]), part, k) for i in range(n)]
            for k in range(1, n)]


def steps(ctx: CollCtx) -> tuple[float, float]:
    inter = (ctx.n - 1) * (1 - 1 / ctx.n_domains)
    return ctx.n - 1 - inter, inter


register(Algorithm("pairwise", frozenset({"all_to_all"}), ("Simple",), plan, steps,
                   tuned=False, latency_key="ring"))
