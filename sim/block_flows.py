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

from sim.costs import contends, contention, sm_seconds
from workloads.graph import Block, Collective, ExpertDispatch


def plays(op, dims: tuple[str, ...]) -> bool:
    return bool(dims) and isinstance(op, Block) and any(
        isinstance(s, Collective) and s.group.dim in dims for s in op.ops)


def _is_played(sub, dims: tuple[str, ...]) -> bool:
    return isinstance(sub, Collective) and sub.group.dim in dims


def play_block(env: simpy.Environment, op: Block, costs, network,
               dims: tuple[str, ...], plans: dict | None = None) -> Generator:
    """Run ``op``; returns seconds per breakdown category (like OpCosts.parts).
    ``plans``: a memo of block_plan per op object (a graph plays each block op many
    times: every microbatch's layers share them)."""
    plan = None if plans is None else plans.get(id(op))
    if plan is None or plan[0] is not op:
        plan = (op, block_plan(op, costs, dims))
        if plans is not None:
            plans[id(op)] = plan
    played, static, busy, steps, order, (slower, slower_held) = plan[1]
    start = env.now
    comm: dict[str, float] = {}
    if steps is None:                         # the all-to-alls run beside the compute
        proc = env.process(_chain(env, played, network, costs, slower))
        yield env.timeout(busy)
        yield proc
        sms = costs.compute.gpu.sms or 0
        lost = _held(played, costs) + (slower_held / sms if sms else 0.0) - (env.now - start - busy)
        if lost > 0:                          # compute slowed by the SMs DeepEP holds
            yield env.timeout(lost)
        exposed = env.now - start - busy
        if exposed > 0:
            comm[dims[0]] = exposed
    else:
        for step in steps:
            if isinstance(step, Collective):
                t0 = env.now
                yield from _play(env, step, network, costs)
                dim = step.group.dim
                comm[dim] = comm.get(dim, 0.0) + env.now - t0
            else:
                yield env.timeout(step)
    parts = {k: static[k] if k in static else comm[k] for k in order}
    for k, v in comm.items():                 # the exposed all-to-all time of an overlap
        parts.setdefault(k, v)
    return parts


def block_plan(op: Block, costs, dims: tuple[str, ...]) -> tuple:
    """What playing ``op`` needs that does not depend on the network's state: (played
    collectives, closed-form seconds per category, closed-form seconds in all, the steps
    (a float: wait that long; a Collective: play it) or None when the played collectives
    overlap the rest, the categories in the order they first appear, the seconds and SM
    seconds DeepEP's normal internode kernels add beside the compute (sim.costs
    ``contention``))."""
    played = [s for s in op.ops if _is_played(s, dims)]
    static: dict[str, float] = {}
    order: dict[str, None] = {}
    busy = pending = 0.0
    steps: list | None = None if set(dims) <= set(op.overlap) else []
    for sub in op.ops:
        if _is_played(sub, dims):
            if steps is None:                 # overlapped: its exposed time comes last
                continue
            order.setdefault(sub.group.dim)
            if pending > 0:
                steps.append(pending)
                pending = 0.0
            steps.append(sub)
        else:
            t = costs.op_time(sub)
            order.setdefault(_add(static, sub, t))
            busy += t
            pending += t
    if steps is not None and pending > 0:
        steps.append(pending)
    wait = costs.parts(op).get("host", 0.0) if getattr(costs, "host", None) else 0.0
    if wait > 0:                              # the GPU's wait for the host's launches
        static["host"] = wait
        order.setdefault("host")
        busy += wait
        if steps is not None:
            steps.append(wait)
    slow = [(s, costs.op_time(s)) for s in played if contends(s)] if steps is None else []
    slower = contention(sum(t for _, t in slow), sum(t * s.sms for s, t in slow),
                        static.get("compute", 0.0))
    return played, static, busy, steps, tuple(order), slower


def _chain(env: simpy.Environment, ops: list[Collective], network, costs,
           slower: float = 0.0) -> Generator:
    for op in ops:
        yield from _play(env, op, network, costs)
    if slower > 0:                            # DeepEP's kernels slowed beside the compute
        yield env.timeout(slower)


def _held(ops: list[Collective], costs) -> float:
    """Compute time lost to the SMs overlapped DeepEP calls hold (sim.costs.exposed_comm)."""
    sms = costs.compute.gpu.sms or 0
    held = sum(sm_seconds(o, costs.op_time(o), sms) for o in ops)
    return held / sms if held and sms else 0.0


def _play(env: simpy.Environment, op: Collective, network, costs) -> Generator:
    """One collective as flows; a DeepEP call (ExpertDispatch) takes its closed form
    (sim/network/deepep.py): the flow model's collectives are NCCL's, not its kernels."""
    if isinstance(op, ExpertDispatch):
        yield env.timeout(costs.op_time(op))
    else:
        yield from network.collective(env, op)


def _add(parts: dict[str, float], sub, t: float) -> str:
    cat = sub.group.dim if isinstance(sub, Collective) else (
        "compute" if type(sub).__name__ == "Compute" else "other")
    parts[cat] = parts.get(cat, 0.0) + t
    return cat
