"""Direct all_to_all: every rank sends S/n to every other rank at once (NCCL's
grouped send/recv). Across domains each GPU's traffic leaves through its own NIC, which
therefore bounds it (NCCL maintainers: all-to-all cannot aggregate NICs)."""

from __future__ import annotations

from sim.network.collectives.base import Algorithm, CollCtx, Plan, register


def plan(ctx: CollCtx) -> Plan:
    part = ctx.nbytes / ctx.n
    return [[(ctx.v(a), ctx.v(b), part, 0) for a in ctx.ranks for b in ctx.ranks if a != b]]


def steps(ctx: CollCtx) -> tuple[float, float]:
    return (1, 0) if ctx.n_domains == 1 else (0, 1)


register(Algorithm("direct", frozenset({"all_to_all"}), ("Simple",), plan, steps,
                   latency_key="ring"))
