"""PAT (Parallel Aggregated Trees, NCCL 2.23) for all_gather / reduce_scatter with one
rank per node: log2 n rounds, in round k each rank exchanges 2^k chunks of S/n with the
rank 2^k away (Bruck-style), so latency grows with log n instead of n. Simple only."""

from __future__ import annotations

import math

from sim.network.collectives.base import Algorithm, CollCtx, Plan, register


def plan(ctx: CollCtx) -> Plan:
    n, part = ctx.n, ctx.nbytes / ctx.n
    phases, k = [], 0
    while (1 << k) < n:
        chunks = min(1 << k, n - (1 << k))
        phases.append([(ctx.v(ctx.ranks[i]), ctx.v(ctx.ranks[(i - (1 << k)) % n]),
                        chunks * part, k) for i in range(n)])
        k += 1
    return phases


def steps(ctx: CollCtx) -> tuple[float, float]:
    return 0, math.ceil(math.log2(ctx.n))


register(Algorithm("pat", frozenset({"all_gather", "reduce_scatter"}), ("Simple",), plan, steps,
                   available=lambda ctx: ctx.local == 1 and ctx.n > 1))
