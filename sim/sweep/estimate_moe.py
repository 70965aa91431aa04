"""Closed-form stage times of MoE / MLA / windowed models for the sweep estimator.

The same kernels the DES plays (workloads.moe_layers, one list per kind of layer: dense
or MoE, full or windowed attention), built and rewritten by the graph builder's own
``stage_layer_ops`` (layer options, FP8 recipe, context parallelism, TP overlap) and
priced with the estimator's cost model; a layer's
EP communication hides behind its compute when ``workload.moe.overlap`` is set, as in
sim.costs. Expert gradients reduced over expert-data-parallel add to the stage's tail.
"""

from __future__ import annotations

from sim.costs import contends, contention, exposed_comm, sm_seconds
from workloads import moe as spec
from workloads import moe_parallel, moe_training
from workloads.graph import Collective, CommGroup
from workloads.moe_layers import layer_forward_at
from workloads.parallel import ParallelPlan
from workloads.training import stage_layer_ops


def _time(est, ops, overlap: bool) -> float:
    comp = ep = held = 0.0
    slow = []
    times = [est.costs.uncached_time(op) for op in ops]
    for op, t in zip(ops, times, strict=True):
        if isinstance(op, Collective) and op.group.dim == "ep":
            ep += t
            held += sm_seconds(op, t, est.costs.compute.gpu.sms or 0)
            if contends(op):
                slow.append((op, t))
        else:
            comp += t
    host = est.host_wait(ops, times, ("ep",) if overlap else ())
    if not overlap:
        return comp + host + ep
    if slow:                            # DeepEP's normal kernels slowed beside the compute
        extra, extra_held = contention(slow, comp)
        ep, held = ep + extra, held + extra_held
    sms = est.costs.compute.gpu.sms or 0
    return comp + host + exposed_comm(ep, comp + host, held / sms if sms else 0.0)


def stage_times(est, plan: ParallelPlan) -> tuple[list[float], list[float], list[float]]:
    """(forward, backward, mean backward of one layer) per stage, one microbatch."""
    model, opts = est.model, est.options
    overlap = bool(opts.moe and opts.moe.overlap)
    fwd, bwd, per_layer = [], [], []
    for s in range(plan.pp):
        ctx, ops = stage_layer_ops(model, plan, opts, s)
        kinds: dict[tuple[bool, bool], tuple[float, float]] = {}
        f = b = 0.0
        ids = [i for c in range(plan.vpp) for i in moe_training.chunk_layers(model, plan, s, c)]
        for i in ids:
            key = (spec.is_moe_layer(model, i), spec.is_window_layer(model, i))
            if key not in kinds:        # one layer's kernels, rewritten as the graph's chunks
                kinds[key] = (_time(est, ops.transform(layer_forward_at(ctx, i)), overlap),
                              _time(est, ops.transform(moe_training.layer_bwd_ops(ctx, plan, i),
                                                       True), overlap))
            f, b = f + kinds[key][0], b + kinds[key][1]
        per_layer.append(b / max(1, len(ids)))
        if s == 0:
            f += _time(est, ops.emb_fwd, False)
            b += _time(est, ops.emb_bwd, False)
        if s == plan.pp - 1:
            f += _time(est, ops.head_fwd, overlap)
            b += _time(est, ops.head_bwd, overlap)
        fwd.append(f)
        bwd.append(b)
    return fwd, bwd, per_layer


def expert_tail(est, plan: ParallelPlan, s: int) -> float:
    """Expert gradients over expert-DP (not hidden), and their parameter all-gather."""
    size = moe_parallel.edp(plan)
    experts = moe_training.stage_split(est.model, plan, s)[1]
    if size <= 1 or experts <= 0:
        return 0.0
    group = CommGroup(moe_parallel.edp_group(plan, s), "dp")
    kind = "reduce_scatter" if plan.zero >= 1 else "all_reduce"
    t = est.network.collective_time(kind, experts * est.options.grad_bytes, group)
    if plan.zero == 1:
        t += est.network.collective_time("all_gather", experts * est.options.param_bytes, group)
    return t
