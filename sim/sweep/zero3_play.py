"""ZeRO-3 / FSDP steps played for the sweep estimator: the nodes the graph builder gives
one rank (workloads/fsdp.py ``Zero3``: a compute node per layer and pass, each waiting
for its parameters' all-gather, issued ``prefetch`` layers ahead; each backward layer's
gradients reduce-scattered after it; gathers and reduce-scatters in order on the rank's
one data-parallel stream), run as the DES runs them (sim/engine.py): each stream in its
order, a node starting once its stream is free and its dependencies are done; with
NCCL's SMs priced (``sim.nccl_sms``) a compute node runs at the engine's shared rate,
1 - f N / S, while a gather or reduce-scatter kernel of N SMs is in flight (f the
node's compute share, S the GPU's SMs).

The node list is the builder's own (``Zero3.add_pass`` on a recording graph), so the
prefetch depth, ``reshard_after_forward``, HSDP and FSDP2's copies and root group are
the graph's; it depends on the plan's shape only, and is built once per shape
(``_Shape``), with the distinct blocks and collectives priced once per plan.

ZeRO-3 runs without pipeline parallelism (sim/sweep/plans.py rejects it with PP > 1),
so the one simulated rank and its order of passes (``Pipeline.steps``) are the whole
step; the tail (HSDP's replica all-reduce after the last reduce-scatter, the optimizer
step) follows (sim/sweep/estimate_schedules.py ``played_end``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from sim.costs import shared_rate
from sim.sweep.pipeline_play import Played
from workloads.fsdp import Zero3, hsdp_replica_all_reduce
from workloads.graph import Block, Collective
from workloads.param_sync import pipeline_of, stage_params


class _Recorder:
    """An ExecutionGraph stand-in that keeps what the builder adds: (stream, op, deps)."""

    def __init__(self):
        self.nodes: list[tuple[str, object, tuple[int, ...]]] = []

    def add(self, rank, stream, op, deps=(), category="compute", name="", **meta) -> int:
        self.nodes.append((stream, op, tuple(d for d in deps if d is not None)))
        return len(self.nodes) - 1


@dataclass(frozen=True)
class _Shape:
    """One rank's ZeRO-3 step as the graph builds it, with its ops deduplicated:
    ``compute`` (op index, dependency nodes) and ``dp`` (op index, dependency nodes) in
    each stream's order, node ids being positions in ``kinds`` (True: compute); ``ops``
    the distinct ops (blocks and collectives), priced once per plan."""
    kinds: tuple[bool, ...]
    compute: tuple[tuple[int, tuple[int, ...]], ...]
    dp: tuple[tuple[int, tuple[int, ...]], ...]
    ops: tuple


def record(model, plan, opts, stage_ops) -> _Recorder:
    """The rank's ZeRO-3 nodes (training.py ``_add_compute`` with ``Zero3.add_pass``, no
    pipeline: no receive, a backward after its own forward on the same stream) and the
    HSDP replica all-reduce of ``add_grad_sync``."""
    g = _Recorder()
    pipe = pipeline_of(plan, model.layers)
    st = SimpleNamespace(index=0, rank=plan.rank(0, 0, 0), pipe=pipe, ops=stage_ops, grad_rs=[])
    z3 = Zero3(g, model, plan, opts, st)
    steps = pipe.steps(0)
    for k, (mb, c, step) in enumerate(steps):
        z3.add_pass(mb, c, step, [], steps[k + 1] if k + 1 < len(steps) else None)
    if st.grad_rs and plan.shard_group < plan.grad_dp:
        hsdp_replica_all_reduce(g, plan, opts, st.rank, 0, stage_params(model, plan, 0),
                                st.grad_rs[-1])
    return g


def _shape(g: _Recorder) -> _Shape:
    ids: dict = {}
    ops: list = []
    kinds, compute, dp = [], [], []
    for stream, op, deps in g.nodes:
        # a collective by its size and group object (the builder's, alive while recorded)
        key = (op.kind, op.bytes, id(op.group)) if isinstance(op, Collective) else id(op)
        if key not in ids:
            ids[key] = len(ops)
            ops.append(op)
        kinds.append(stream == "compute")
        (compute if stream == "compute" else dp).append((ids[key], deps))
    return _Shape(tuple(kinds), tuple(compute), tuple(dp), tuple(ops))


def shape_of(est, plan) -> _Shape:
    """``_Shape`` of a plan, kept by the estimator (``est.zero3_shapes``)."""
    got = est.zero3_shapes.get(plan)
    if got is None:
        got = est.zero3_shapes[plan] = _shape(record(est.model, plan, est.options,
                                                     est.stage_ops(plan)))
    return got


def play(est, plan) -> Played:
    """When the rank's compute and its DP stream end, each stream playing its nodes in
    order as sim/engine.py does (module docstring)."""
    shape = shape_of(est, plan)
    costs = est.costs
    secs, frac, sms = [], [], []
    share = est.costs.comm_sms is not None and bool(est.compute.gpu.sms)
    gpu_sms = est.compute.gpu.sms or 0
    for op in shape.ops:
        if isinstance(op, Block):
            parts = est.block_parts(op)
            t = sum(parts.values())
            secs.append(t)
            frac.append(min(1.0, parts.get("compute", 0.0) / t) if t > 0 else 0.0)
            sms.append(0)
        else:
            secs.append(est._coll(op.kind, op.bytes, op.group))
            frac.append(0.0)
            sms.append(costs.comm_sms(op) if share else 0)
    kinds, dp, n_dp = shape.kinds, shape.dp, len(shape.dp)
    end = [0.0] * len(kinds)
    spans: list[tuple[float, float, int]] = []
    t_c = t_d = 0.0
    ci = di = 0
    pos = 0
    node = 0
    # node ids in add order: the i-th compute / dp node's id
    cid = [i for i, k in enumerate(kinds) if k]
    did = [i for i, k in enumerate(kinds) if not k]
    done = [False] * len(kinds)
    for _ in range(len(kinds)):
        if di < n_dp and all(done[d] for d in dp[di][1]):
            k, deps = dp[di]
            start = max([t_d, *(end[d] for d in deps)])
            t_d = start + secs[k]
            if sms[k]:
                spans.append((start, t_d, sms[k]))
            node = did[di]
            di += 1
        else:
            k, deps = shape.compute[ci]
            t = max([t_c, *(end[d] for d in deps)])
            w = secs[k]
            if spans and frac[k] > 0:
                t, pos = _shared(spans, pos, t, w, frac[k], gpu_sms)
            else:
                t += w
            t_c = t
            node = cid[ci]
            ci += 1
        end[node] = t_d if not kinds[node] else t_c
        done[node] = True
    return Played([t_c], [[t_c]], [t_d])


def _shared(spans, pos: int, t: float, w: float, f: float, gpu_sms: int) -> tuple[float, int]:
    """(end, first span still open at the start) of ``w`` seconds of work of compute
    share ``f`` started at ``t``, at the engine's rate under ``spans`` (pipeline_play
    ``DPStream.run``)."""
    n = len(spans)
    while pos < n and spans[pos][1] <= t:
        pos += 1
    i = pos
    while i < n:
        a, b, k = spans[i]
        if a > t:
            if t + w <= a:
                return t + w, pos
            w -= a - t
            t = a
        rate = shared_rate(f, k, gpu_sms)
        if t + w / rate <= b:
            return t + w / rate, pos
        w -= (b - t) * rate
        t = b
        i += 1
    return t + w, pos
