"""Hierarchical all_reduce: intra-domain reduce-scatter, inter-domain all_reduce of each
1/k shard among ranks with the same local index (one ring per rail), intra-domain
all-gather (Horovod's hierarchical allreduce; 2D algorithms in Megatron/DeepSpeed)."""

from __future__ import annotations

from sim.network.collectives.base import Algorithm, CollCtx, Plan, register


def _intra(ctx: CollCtx) -> list:
    flows = []
    for ranks in ctx.domains:
        k = len(ranks)
        if k > 1:
            flows += [(ctx.v(ranks[i]), ctx.v(ranks[(i + 1) % k]), (k - 1) / k * ctx.nbytes, 0)
                      for i in range(k)]
    return flows


def plan(ctx: CollCtx) -> Plan:
    m, k = ctx.n_domains, ctx.local
    inter = []
    for j in range(k):
        ring = [d[j % len(d)] for d in ctx.domains]
        inter += [(ctx.v(ring[i]), ctx.v(ring[(i + 1) % m]), 2 * (m - 1) / m * ctx.nbytes / k, j)
                  for i in range(m) if m > 1]
    return [_intra(ctx), inter, _intra(ctx)]


def steps(ctx: CollCtx) -> tuple[float, float]:
    return 2 * (ctx.local - 1), 2 * (ctx.n_domains - 1)


register(Algorithm("hierarchical", frozenset({"all_reduce"}), ("Simple",), plan, steps,
                   tuned=False, latency_key="ring"))
