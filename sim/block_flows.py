"""Playing a block's collectives of some dimensions as real transfers (``sim.ep_flows``).

A Block's kernels and collectives are normally costed in closed form (sim.costs), each
collective alone on the fabric. Under ``fidelity: flow`` with ``sim.ep_flows: true`` the
engine plays the block's expert-parallel all-to-alls through the network model instead,
so their flows share links with whatever else is in flight (data-parallel buckets,
pipeline sends, other stages' all-to-alls). The kernels between them still take their
closed-form time. With ``overlap`` (workload.moe.overlap) the all-to-alls run beside the
block's compute and the block ends when both are done.
"""

from __future__ import annotations

from collections.abc import Generator

import simpy

from workloads.graph import Block, Collective


def plays(op, dims: tuple[str, ...]) -> bool:
    return bool(dims) and isinstance(op, Block) and any(
        isinstance(s, Collective) and s.group.dim in dims for s in op.ops)


def _is_played(sub, dims: tuple[str, ...]) -> bool:
    return isinstance(sub, Collective) and sub.group.dim in dims


def play_block(env: simpy.Environment, op: Block, costs, network,
               dims: tuple[str, ...]) -> Generator:
    """Run ``op``; returns seconds per breakdown category (like OpCosts.parts)."""
    parts: dict[str, float] = {}
    start = env.now
    if set(dims) <= set(op.overlap):
        comm = env.process(_chain(env, [s for s in op.ops if _is_played(s, dims)], network))
        busy = 0.0
        for sub in op.ops:
            if not _is_played(sub, dims):
                _add(parts, sub, costs.op_time(sub))
                busy += costs.op_time(sub)
        yield env.timeout(busy)
        yield comm
        exposed = env.now - start - busy
        if exposed > 0:
            parts[dims[0]] = parts.get(dims[0], 0.0) + exposed
        return parts
    pending = 0.0
    for sub in op.ops:
        if _is_played(sub, dims):
            if pending > 0:
                yield env.timeout(pending)
                pending = 0.0
            t0 = env.now
            yield from network.collective(env, sub)
            parts[sub.group.dim] = parts.get(sub.group.dim, 0.0) + env.now - t0
        else:
            t = costs.op_time(sub)
            _add(parts, sub, t)
            pending += t
    if pending > 0:
        yield env.timeout(pending)
    return parts


def _chain(env: simpy.Environment, ops: list[Collective], network) -> Generator:
    for op in ops:
        yield from network.collective(env, op)


def _add(parts: dict[str, float], sub, t: float) -> None:
    cat = sub.group.dim if isinstance(sub, Collective) else (
        "compute" if type(sub).__name__ == "Compute" else "other")
    parts[cat] = parts.get(cat, 0.0) + t
