"""An async checkpoint write played as storage flows during a training iteration (fidelity
``flow``): how much the background write slows the steps it overlaps.

When it applies: ``sim.fidelity: flow``, ``cluster.storage`` with a ``network`` (how nodes
reach storage) and ``workload.checkpoint.mode: async``. The write then starts at time 0 of
the simulated iteration, from every writing GPU at once (one flow each, ``sim/storage_flows.py``),
and runs unthrottled beside the iteration's collectives on the same ``FlowNetwork``. That is
what both async writers do: Megatron-LM's ``dist_checkpointing/strategies/async_utils.py``
("start a checkpoint save process in the background": ``AsyncCallsQueue.schedule_async_request``
forks the writer as soon as the state is staged in host memory, and the training loop only
polls it with ``maybe_finalize_async_calls``), and PyTorch DCP ``async_save`` (stages to CPU,
then writes from a background thread while training continues; PyTorch blog "6x faster async
checkpointing", 2025). Neither paces the write, so it starts with the first step after the
snapshot (the snapshot itself is the blocking part, ``workloads/checkpoint.py``).

A write longer than one step overlaps several. The step after the snapshot is simulated with
the write in flight; the write's pace during it (bytes moved by the iteration's end over the
time its flows ran, after the tier latency) is taken as its steady state: every later step it
overlaps repeats the first, so the write lasts ``write_s = iteration_s_with + bytes left / pace``
and spans ``overlapped_steps = write_s / iteration_s_with`` slowed steps (fractional: the last
one is charged in proportion). A write that ends inside the step is timed exactly and
overlaps one step (its whole effect is in ``iteration_s_with``). The run model
(``sim/reliability.py``) charges ``(iteration_s_with - iteration_s_without) x overlapped_steps``
per checkpoint that is followed by training.

On a ``frontend`` (dedicated) storage network the write shares no link with training, so
``iteration_s_with == iteration_s_without``; on a ``backend`` (converged) one it shares the
writers' compute NICs and leaf uplinks with DP/PP collectives, max-min fairly.
"""

from __future__ import annotations

import simpy

from hw_models import storage
from sim.run_config import CheckpointConfig, StorageConfig
from sim.setup import Setup, build_engine, make_network
from sim.storage_flows import attach_storage
from workloads.checkpoint import checkpoint_size
from workloads.parallel import ParallelPlan


def applies(sc) -> bool:
    """Flow fidelity, a storage network and an async checkpoint: the write can be played."""
    stor = sc.cluster.storage
    ckpt = getattr(sc.workload, "checkpoint", None)
    return (sc.sim.fidelity == "flow" and stor is not None and stor.network is not None
            and ckpt is not None and ckpt.mode == "async")


def writer_ranks(plan: ParallelPlan, sharded: bool) -> tuple[int, ...]:
    """Every rank with a sharded optimizer (ZeRO-1+/distributed optimizer), else one data-parallel
    replica (dp rank 0: its tp x pp ranks), as ``workloads.checkpoint.writers`` counts them."""
    if sharded:
        return tuple(range(plan.world))
    return tuple(sorted(plan.rank(t, 0, p) for p in range(plan.pp) for t in range(plan.tp)))


def checkpoint_contention(setup: Setup, graph, prof, t_plain: float) -> dict | None:
    """Replay ``graph`` with the async checkpoint write in flight (see the module doc); None
    when it does not apply. ``t_plain`` is the iteration time without the write."""
    sc = setup.scenario
    if not applies(sc):
        return None
    stor: StorageConfig = sc.cluster.storage
    ckpt: CheckpointConfig = sc.workload.checkpoint
    size = checkpoint_size(setup.model, ckpt.weight_dtype, optimizer=ckpt.optimizer).total
    ranks = writer_ranks(setup.plan, bool(setup.plan.zero) or ckpt.sharded)
    net = make_network(setup, prof)
    flows = attach_storage(net, stor.checkpoint_tier(), storage.network(stor.network))
    engine = build_engine(setup, graph, prof, net)
    env, seen = engine.env, {}

    def write():
        yield from flows.transfer(env, ranks, "write", size)
        seen["write_end"] = env.now

    def watch():                                  # the iteration's last node has finished
        yield simpy.AllOf(env, engine.done)
        seen["left"] = flows.bytes_left(env, size)

    env.process(write())
    env.process(watch())
    t_with = max(r.end for r in engine.run())
    left, lat = seen["left"], flows.tier.latency_ms * 1e-3
    moved = size - left
    if left <= 0:                                 # done within the step: timed exactly
        steps, write_s = 1.0, seen["write_end"]
    elif moved > 0:                               # the rest at the pace of the first step
        write_s = t_with + left * (t_with - lat) / moved
        steps = write_s / t_with
    else:                                         # the step is shorter than the tier latency
        write_s = flows.transfer_time(ranks, "write", size)
        steps = max(1.0, write_s / t_with)
    return {"iteration_s_without": t_plain, "iteration_s_with": t_with, "write_s": write_s,
            "overlapped_steps": steps, "writers": len(ranks), "bytes": size,
            "attach": storage.network(stor.network).attach}
