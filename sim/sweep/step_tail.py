"""The tail of a played pipeline step, for ``sim/sweep/estimate.py``: after each rank's
passes (sim/sweep/estimate_schedules.py, sim/sweep/pipeline_play.py), the gradient
buckets on each rank's data-parallel channel, the tied-embedding and DualPipe copy syncs,
the optimizer step and the ZeRO-1 parameter all-gathers, in the order the graph plays
them (workloads/param_sync.py ``add_grad_sync``)."""

from __future__ import annotations

from sim.sweep import pipeline_play
from workloads import moe_parallel, moe_training
from workloads.graph import CommGroup
from workloads.parallel import ParallelPlan
from workloads.param_sync import (
    bucket,
    copy_grad_params,
    copy_pair,
    grad_reduce_kind,
    optimizer_ops,
    tied_sync_params,
)


def played_end(est, plan: ParallelPlan, played: pipeline_play.Played,
               layer_ends=None) -> float:
    """When the step ends after a played split-backward schedule, each rank's compute over
    at ``played.end`` and each chunk's gradients complete at ``played.grads_done``, as the
    graph plays the tail (workloads/param_sync.py ``add_grad_sync``; ZeRO 0/1, the only
    ones these schedules run): on each rank's serial DP channel the replicated gradient
    buckets in the graph's order (``layer_buckets``: chunks from the last, each bucket as
    its chunk completes, or after the compute without ``overlap_grad_reduce`` or
    ``grad_reduce_per_stage``), the tied-embedding sync, which starts when both end
    ranks are ready for it, MoE expert buckets over expert-DP (``add_expert_grad_sync``),
    DualPipe's sum of the two copies' gradients between a rank and its mirror, which
    starts when both are ready (``add_copy_grad_sync``); then the optimizer step on the compute stream, and the ZeRO-1 parameter all-gathers
    after it. ``est``: the sim.sweep.estimate.Estimator. ``layer_ends(s)``: when each
    replicated gradient of rank ``s`` is complete, layer by layer (``last_backward_layers``:
    GPipe and 1F1B with ``overlap_grad_reduce``); without it, when its chunk is."""
    model, opts, p = est.model, est.options, plan.pp
    free = list(played.free) if played.free is not None else [
        _grad_queue(est, plan, s, played.end[s], played.grads_done[s],
                    layer_ends and layer_ends(s)) for s in range(p)]
    ends = plan.tied_pair(model.tied_embeddings)
    if ends:
        pair = CommGroup(tuple(plan.rank(0, 0, e) for e in ends), "dp")
        start = max(max(free[s], played.end[s]) for s in ends)
        for s in ends:
            free[s] = start + est.network.collective_time(
                "all_reduce", tied_sync_params(model, plan) * opts.grad_bytes, pair)
    free = [_expert_queue(est, plan, s, played.grads_done[s], free[s]) for s in range(p)]
    for s in range(p // 2):             # DualPipe: the two copies' gradients summed
        pair = copy_pair(plan, s)
        if pair is None:
            break
        start = max(max(free[r], played.end[r]) for r in (s, p - 1 - s))
        for r in (s, p - 1 - s):
            free[r] = start + est._coll("all_reduce", copy_grad_params(model, plan, r)
                                        * opts.grad_bytes, pair)
    return max(played.copies, *(_step_end(est, plan, s, played.end[s], free[s])
                                for s in range(p)))


def _grad_queue(est, plan: ParallelPlan, s: int, end: float, grads_done: list[float],
                layer_ends: list[float] | None = None) -> float:
    """When stage ``s``'s DP channel has reduced its replicated gradient buckets, each
    after its chunk (or, with ``overlap_grad_reduce`` and ``layer_ends``, its last layer)
    is complete."""
    opts, free = est.options, 0.0
    if plan.grad_dp > 1:
        kind = grad_reduce_kind(plan, opts)
        dp = CommGroup(plan.dp_group(s), "dp")
        params = est.params_of(plan, s)
        by_chunk = opts.overlap_grad_reduce or opts.grad_reduce_per_stage
        ready = replicated_grads(est.model, plan, s, params)
        if layer_ends and opts.overlap_grad_reduce:
            ready = [(n, -1 - j) for j, (n, _) in enumerate(ready)]
        for n, c in bucket(ready, opts.bucket_params):
            at = layer_ends[-1 - c] if c < 0 else grads_done[c] if by_chunk else end
            free = max(free, at) + est._coll(kind, n * opts.grad_bytes, dp)
    return free


def _expert_queue(est, plan: ParallelPlan, s: int, grads_done: list[float],
                  free: float) -> float:
    """When stage ``s``'s DP channel, free at ``free``, has reduced the MoE expert
    buckets over expert-DP (``add_expert_grad_sync``), each as its chunk completes."""
    model, opts = est.model, est.options
    size = 1 if model.uniform else moe_parallel.edp(plan)
    if size > 1:
        kind = grad_reduce_kind(plan, opts)
        edp = CommGroup(moe_parallel.edp_group(plan, s), "dp")
        ready = [(e, c) for c, grads in moe_training.expert_grads(model, plan, s)
                 for e in grads if e > 0]
        for n, c in bucket(ready, opts.bucket_params):
            free = max(free, grads_done[c]) + est._coll(kind, n * opts.grad_bytes, edp)
    return free


def _step_end(est, plan: ParallelPlan, s: int, end: float, free: float) -> float:
    """When stage ``s`` ends the step, its DP channel free at ``free``: the optimizer,
    the ZeRO-1 parameter all-gathers."""
    model, opts = est.model, est.options
    params = est.params_of(plan, s)
    gather = None if model.uniform else moe_training.expert_gather(model, plan, s, opts)
    t = max(end, free) + sum(est.costs.uncached_time(op)
                             for op in optimizer_ops(model, plan, s, opts, params))
    if plan.zero in (1, 2) and plan.grad_dp > 1:
        dp = CommGroup(plan.dp_group(s), "dp")
        t += est.network.collective_time("all_gather", params * opts.param_bytes, dp)
    if gather is not None:
        t += est.network.collective_time(gather.kind, gather.bytes, gather.group)
    return t


def replicated_grads(model, plan: ParallelPlan, s: int, params: float) -> list:
    """(parameters, chunk) of each layer's replicated gradients on stage ``s`` in the
    order the graph's buckets take them (param_sync.layer_buckets: chunks from the last,
    layers from the last), the embeddings with the last."""
    ready = []
    for c in reversed(range(plan.chunks)):
        if model.uniform:
            n = plan.pipeline(model.layers).chunk_layers(s, c)
            ready += [(model.params_per_layer / plan.tp, c)] * n
        else:
            ready += [(moe_training.layer_dense(model, plan, i), c) for i in
                      reversed(moe_training.chunk_layers(model, plan, s, c))]
    if ready:
        ready[-1] = (ready[-1][0] + params - sum(n for n, _ in ready), ready[-1][1])
    return ready
