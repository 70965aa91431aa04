"""NVLS: all_reduce reduced inside the NVSwitch (NVLink SHARP, Hopper and later).

Each GPU's chunk is reduced by multimem loads from all GPUs (its port sends S in total)
and the result is multicast back (each port receives S); the reduce-scatter part adds
S/n each way. So per GPU port (1 + 1/n) S each direction instead of the ring's
2(n-1)/n S (NVIDIA, "NVLink SHARP", Hot Chips 34, 2022). One domain only; NVLSTree
extends it across domains.
"""

from __future__ import annotations

from sim.network.collectives.base import Algorithm, CollCtx, Plan, register


def available(ctx: CollCtx) -> bool:
    """NVLS-capable switch under every rank and more than two GPUs per domain (NCCL's
    ncclNvlsInit, src/transport/nvls.cc, turns NVLS off when ``gpuCount <= 2``)."""
    return ctx.nvls and ctx.local > 2 and all(ctx.topo.scale_up_switch(r) is not None for r in ctx.ranks)


def nvls_flows(ctx: CollCtx, ranks: list[int], nbytes: float) -> list:
    per = (1 + 1 / len(ranks)) * nbytes
    flows = []
    for r in ranks:
        sw = ctx.topo.scale_up_switch(r)
        flows += [(ctx.v(r), sw, per, 0), (sw, ctx.v(r), per, 0)]
    return flows


def plan(ctx: CollCtx) -> Plan:
    return [nvls_flows(ctx, list(ctx.ranks), ctx.nbytes)]


def steps(ctx: CollCtx) -> tuple[float, float]:
    return 1, 0


register(Algorithm("nvls", frozenset({"all_reduce"}), ("Simple",), plan, steps,
                   available=lambda ctx: ctx.n_domains == 1 and available(ctx)))
