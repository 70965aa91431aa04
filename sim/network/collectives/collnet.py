"""CollNet / SHARP: reduction inside the network switches (InfiniBand SHARP).

Intra-domain reduce-scatter over the scale-up ring, each local rank sends its 1/k shard
to its leaf switch, which reduces across domains and returns the result, then an
intra-domain all-gather. Needs ``cluster.network.sharp: true``.
"""

from __future__ import annotations

from sim.network.collectives.base import Algorithm, CollCtx, Plan, register


def _intra_ring(ctx: CollCtx, nbytes: float) -> list:
    flows = []
    for ranks in ctx.domains:
        k = len(ranks)
        flows += [(ctx.v(ranks[i]), ctx.v(ranks[(i + 1) % k]), (k - 1) / k * nbytes, 0)
                  for i in range(k) if k > 1]
    return flows


def plan(ctx: CollCtx) -> Plan:
    shard = ctx.nbytes / ctx.local
    net = []
    for ranks in ctx.domains:
        for r in ranks:
            leaf = ctx.topo.leaf_of(r)
            net += [(ctx.v(r), leaf, shard, 0), (leaf, ctx.v(r), shard, 0)]
    return [_intra_ring(ctx, ctx.nbytes), net, _intra_ring(ctx, ctx.nbytes)]


def steps(ctx: CollCtx) -> tuple[float, float]:
    return 2 * (ctx.local - 1), 1


def available(ctx: CollCtx) -> bool:
    return ctx.sharp and ctx.n_domains > 1 and all(ctx.topo.leaf_of(r) is not None
                                                   for r in ctx.ranks)


register(Algorithm("collnet", frozenset({"all_reduce"}), ("Simple",), plan, steps,
                   available=available))
