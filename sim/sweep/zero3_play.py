"""ZeRO-3 / FSDP steps played for the sweep estimator: the nodes the graph builder gives
one rank (workloads/fsdp.py ``Zero3``: a compute node per layer and pass, each waiting
for its parameters' all-gather, issued ``prefetch`` layers ahead; each backward layer's
gradients reduce-scattered after it; gathers and reduce-scatters in order on the rank's
one data-parallel stream; workloads/offload.py's activation copies on the host-link
streams; workloads/param_sync.py ``add_grad_sync``'s tail: HSDP's replica all-reduce,
the optimizer step on the GPU or on the host), run as the DES runs them
(sim/engine.py): each stream in its order, a node starting once its stream is free and
its dependencies are done; with NCCL's SMs priced (``sim.nccl_sms``) a compute node runs
at the engine's shared rate, 1 - f N / S, while a collective kernel of N SMs is in
flight on a side stream (f the node's compute share, S the GPU's SMs).

The node list is the builder's own (``_add_compute``'s ZeRO-3 branch and
``add_grad_sync`` on a recording graph), so the prefetch depth,
``reshard_after_forward``, HSDP, FSDP2's copies and root group and host offload are the
graph's; it is built once per plan (``_Shape``), with its distinct blocks, collectives
and copies priced once.

ZeRO-3 runs without pipeline parallelism in sweeps (sim/sweep/plans.py rejects it with
PP > 1), so the one simulated rank and its order of passes (``Pipeline.steps``) are the
whole step: the iteration is when its last node ends.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import SimpleNamespace

from sim.sweep.pipeline_play import shared_end
from workloads.fsdp import Zero3
from workloads.graph import Block, Collective, Compute, Memory
from workloads.offload import ActivationOffload, OffloadOptions
from workloads.param_sync import add_grad_sync, pipeline_of
from workloads.training import Stage, make_stage, offload_chunks


class _Recorder:
    """An ExecutionGraph stand-in that keeps what the builder adds: (stream, op, deps)."""

    def __init__(self):
        self.nodes: list[tuple[str, object, tuple[int, ...]]] = []

    def add(self, rank, stream, op, deps=(), category="compute", name="", **meta) -> int:
        deps = tuple(deps)
        if None in deps:
            deps = tuple(d for d in deps if d is not None)
        self.nodes.append((stream, op, deps))
        return len(self.nodes) - 1


@dataclass(frozen=True)
class _Shape:
    """One rank's ZeRO-3 step as the graph builds it, its ops deduplicated: per node
    (stream index, op index, dependency nodes) in the order the builder adds them,
    stream 0 the compute stream; ``ops`` the distinct ops, priced once per plan."""
    nodes: tuple[tuple[int, int, tuple[int, ...]], ...]
    streams: int
    ops: tuple


class _Part:
    """Stands for one of a stage's runs of layer ops (``StageOps.fwd``, ``emb_fwd`` ...)
    in a recorded block, so that plans that differ only in their layers' kernels share
    one recorded step (``shape_of``)."""
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


_PARTS = ("fwd", "bwd", "emb_fwd", "emb_bwd", "head_fwd", "head_bwd")
_MARKS = SimpleNamespace(**{n: (_Part(n),) for n in _PARTS})


def record(model, plan, opts, stage_ops=_MARKS) -> _Recorder:
    """The rank's nodes: training.py ``_add_compute``'s ZeRO-3 branch without a pipeline
    (no receive; a backward after its own forward on the same stream), its activation
    copies, then ``add_grad_sync``. With the default ``stage_ops`` a uniform model's blocks
    hold ``_Part`` marks in place of the layers' ops; a model whose layers differ (MoE,
    MLA, windowed) records each layer's own kernels, as the graph builder's stage has them."""
    g = _Recorder()
    pipe = pipeline_of(plan, model.layers)
    if model.uniform:
        st = Stage(0, plan.rank(0, 0, 0), None, model.layers, pipe, stage_ops)
    else:
        st = make_stage(model, plan, opts, 0)
    z3 = Zero3(g, model, plan, opts, st)
    offload = ActivationOffload(g, st, opts.offload, offload_chunks(model, plan, opts, 0))
    steps = pipe.steps(0)
    for k, (mb, c, step) in enumerate(steps):
        deps = [offload.before(mb, c, step)]
        st.node[(mb, c, step)] = z3.add_pass(mb, c, step, deps,
                                             steps[k + 1] if k + 1 < len(steps) else None)
        offload.after(st.node[(mb, c, step)], mb, c, step)
    add_grad_sync(g, model, plan, opts, st)
    return g


def _shape(g: _Recorder) -> _Shape:
    ids: dict = {}
    ops: list = []
    streams = {"compute": 0}
    nodes = []
    for stream, op, deps in g.nodes:
        # collectives and copies by their size (a collective's group object is the
        # builder's, alive while recorded), blocks by their ops, other ops by identity
        key = ((op.kind, op.bytes, id(op.group)) if isinstance(op, Collective) else
               (op.kind, op.bytes) if isinstance(op, Memory) else
               op.ops if isinstance(op, Block) else id(op))
        if key not in ids:
            ids[key] = len(ops)
            ops.append(op)
        nodes.append((streams.setdefault(stream, len(streams)), ids[key], deps))
    return _Shape(tuple(nodes), len(streams), tuple(ops))


def shape_of(est, plan, offload: OffloadOptions | None) -> _Shape:
    """``_Shape`` of a plan and its host offload, kept by the estimator
    (``est.zero3_shapes``) and shared by the plans that differ only in their layers'
    kernels (recompute, sequence parallelism, TP overlap: what the graph's ZeRO-3 nodes,
    copies and tail do not depend on). A model whose layers differ records its kernels,
    so its key is the whole plan."""
    key = (replace(plan, recompute="none", sequence_parallel=False, tp_comm_overlap="none")
           if est.model.uniform else plan, offload)
    got = est.zero3_shapes.get(key)
    if got is None:
        opts = replace(est.options, offload=offload or OffloadOptions())
        got = est.zero3_shapes[key] = _shape(record(est.model, plan, opts))
    return got


def _prices(est, plan, shape: _Shape) -> tuple[list[float], list[float], list[int]]:
    """(seconds, compute share, SMs held) of each of ``shape``'s ops, as the engine prices
    them: a block its categories (its ``_Part`` marks replaced by the plan's layer ops),
    a collective its closed form (holding its kernel's SMs on a side stream with NCCL's
    SMs priced), a copy over the host link."""
    costs = est.costs
    share = costs.comm_sms is not None and bool(est.compute.gpu.sms)
    layer_ops = est.stage_ops(plan)
    secs, frac, sms = [], [], []
    for op in shape.ops:
        f, k = 0.0, 0
        if isinstance(op, Block):
            parts = est.block_parts(Block(tuple(
                x for o in op.ops
                for x in (getattr(layer_ops, o.name) if isinstance(o, _Part) else (o,))),
                op.name, op.overlap))
            t = sum(parts.values())
            f = min(1.0, parts.get("compute", 0.0) / t) if t > 0 else 0.0
        elif isinstance(op, Collective):
            t = est._coll(op.kind, op.bytes, op.group)
            k = costs.comm_sms(op) if share else 0
        else:
            t = costs.uncached_time(op)
            f = 1.0 if isinstance(op, Compute) else 0.0
        secs.append(t)
        frac.append(f)
        sms.append(k)
    return secs, frac, sms


def step_time(est, plan, offload: OffloadOptions | None = None) -> float:
    """When the rank's step ends, each stream playing its nodes in order as
    sim/engine.py does (module docstring). The side streams go as far as their
    dependencies allow before each compute node, so every kernel that can run beside it
    is placed when its rate is taken: a side node not placed then waits, through its
    stream's order or its dependencies, for a compute node not run yet."""
    shape = shape_of(est, plan, offload)
    secs, frac, sms = _prices(est, plan, shape)
    gpu_sms = est.compute.gpu.sms or 0
    queues: list[list[int]] = [[] for _ in range(shape.streams)]
    for i, (s, _, _) in enumerate(shape.nodes):
        queues[s].append(i)
    nodes, end = shape.nodes, [-1.0] * len(shape.nodes)
    free, head = [0.0] * shape.streams, [0] * shape.streams
    spans: list[tuple[float, float, int]] = []
    pos = 0
    for i in queues[0]:
        _side(queues, nodes, secs, sms, end, free, head, spans)
        _, k, deps = nodes[i]
        t = _ready(deps, end, free[0])
        if t < 0:
            raise ValueError("ZeRO-3 step: a compute node waits on a node never run")
        if spans and frac[k] > 0:
            t, pos = shared_end(spans, pos, t, secs[k], frac[k], gpu_sms)
        else:
            t += secs[k]
        free[0] = end[i] = t
    _side(queues, nodes, secs, sms, end, free, head, spans)
    if min(end) < 0:
        raise ValueError("ZeRO-3 step: a side stream waits on a node never run")
    return max(end)


def _ready(deps, end: list[float], t: float) -> float:
    """When a node whose stream is free at ``t`` can start: after its dependencies'
    ends; -1 while one has not run."""
    for d in deps:
        e = end[d]
        if e < 0:
            return -1.0
        if e > t:
            t = e
    return t


def _side(queues, nodes, secs, sms, end, free, head, spans) -> None:
    """Run the side streams' nodes (streams 1 on) as far as their dependencies allow,
    each collective holding its SMs from its start to its end (``spans``); with several
    side streams, again while one placed a node another may wait for."""
    again = len(queues) > 2
    while True:
        moved = False
        for s in range(1, len(queues)):
            q = queues[s]
            while head[s] < len(q):
                i = q[head[s]]
                _, k, deps = nodes[i]
                t = _ready(deps, end, free[s])
                if t < 0:
                    break
                free[s] = end[i] = t + secs[k]
                if sms[k]:
                    spans.append((t, end[i], sms[k]))
                head[s] += 1
                moved = True
        if not (moved and again):
            return
