"""Training-step graph builder: one iteration of a transformer under a ParallelPlan.

Symmetry: only one rank per pipeline stage is simulated (dp = 0, tp = 0); its TP peers
and DP replicas do identical work, and its collectives still name the full groups so
the network model sees their true size and placement. A (microbatch, chunk, pass) is one
Block node (the layers' kernels and the TP collectives between them, which are on the
critical path); the last microbatch's backward is split per layer so that DP gradient
buckets can overlap with it, as Megatron-LM's ``overlap_grad_reduce`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workloads.graph import Block, Collective, CommGroup, Compute, ExecutionGraph, SendRecv
from workloads.layers import (
    AttentionImpl,
    LayerContext,
    embedding_backward,
    embedding_forward,
    head_backward,
    head_forward,
    layer_backward,
    layer_forward,
    layer_recompute,
)
from workloads.model import ModelSpec
from workloads.parallel import ParallelPlan
from workloads.schedules import schedule

# Mixed-precision Adam step (Megatron-LM fused Adam, fp32 master weights): reads master
# weight, fp32 grad, m, v (16 B) and writes master, m, v and the 16-bit copy (14 B), plus
# one fp32 read of the grad for the global grad-norm (Megatron's clip_grad_norm).
ADAM_BYTES_PER_PARAM = 16 + 14 + 4


@dataclass(frozen=True)
class TrainingOptions:
    dtype: str = "bf16"                 # GEMM precision
    attention: AttentionImpl = "flash"
    grad_bytes: int = 4                 # bytes per gradient element in the DP reduction
    overlap_grad_reduce: bool = True
    bucket_params: float = 40e6         # Megatron-LM's default DDP bucket (40M elements)


@dataclass
class _Stage:
    index: int
    rank: int
    ctx: LayerContext
    layers: int
    fwd: list[Block] = field(default_factory=list)     # per chunk
    bwd: list[Block] = field(default_factory=list)     # per chunk
    node: dict = field(default_factory=dict)            # (mb, chunk, pass) -> node id
    last_bwd_layers: dict = field(default_factory=dict)  # chunk -> [node per layer, backward order]


def stage_params(model: ModelSpec, plan: ParallelPlan, stage: int) -> float:
    """Parameters held by one TP rank of a pipeline stage (embedding on the first stage,
    untied output layer on the last; positions are replicated)."""
    layers = plan.stage_layers(model.layers)[stage]
    n = layers * model.params_per_layer / plan.tp
    if stage == 0:
        n += model.vocab * model.hidden / plan.tp + (0 if model.rope else model.seq_len * model.hidden)
    if stage == plan.pp - 1 and (not model.tied_embeddings or plan.pp > 1):
        n += model.vocab * model.hidden / plan.tp
    return n


def build(model: ModelSpec, plan: ParallelPlan, opts: TrainingOptions) -> ExecutionGraph:
    stages = [_make_stage(model, plan, opts, s) for s in range(plan.pp)]
    g = ExecutionGraph(plan.world, tuple(st.rank for st in stages),
                       meta={"kind": "training", "microbatches": plan.microbatches})
    steps = {st.index: schedule(plan.effective_schedule, plan.microbatches, plan.pp, plan.vpp,
                                st.index) for st in stages}
    recv = _add_recvs(g, plan, stages, steps, model, opts)
    for st in stages:
        _add_compute(g, plan, st, steps[st.index], recv)
    _add_sends(g, plan, stages, steps, recv)
    for st in stages:
        _add_grad_sync(g, model, plan, opts, st)
    return g


def _make_stage(model: ModelSpec, plan: ParallelPlan, opts: TrainingOptions, s: int) -> _Stage:
    ctx = LayerContext(model, plan.micro_batch, plan.tp, plan.sp, opts.dtype,
                       CommGroup(plan.tp_group(s), "tp"), opts.attention)
    layers = plan.stage_layers(model.layers)[s]
    st = _Stage(s, plan.rank(0, 0, s), ctx, layers)
    per_chunk = layers // plan.vpp
    fwd_l, bwd_l = layer_forward(ctx), layer_recompute(ctx, plan.recompute) + layer_backward(ctx)
    for c in range(plan.vpp):
        first, last = _is_first(plan, s, c), _is_last(plan, s, c)
        f = (embedding_forward(ctx) if first else []) + fwd_l * per_chunk \
            + (head_forward(ctx) if last else [])
        b = (head_backward(ctx) if last else []) + bwd_l * per_chunk \
            + (embedding_backward(ctx) if first else [])
        st.fwd.append(Block(tuple(f), f"fwd_c{c}"))
        st.bwd.append(Block(tuple(b), f"bwd_c{c}"))
    return st


def _is_first(plan: ParallelPlan, s: int, c: int) -> bool:
    return s == 0 and c == 0


def _is_last(plan: ParallelPlan, s: int, c: int) -> bool:
    return s == plan.pp - 1 and c == plan.vpp - 1


def _p2p_bytes(model: ModelSpec, plan: ParallelPlan) -> float:
    """Activation (or its gradient) between stages. Megatron's scatter-gather optimisation
    (SC'21 section 4.1) sends 1/t of it from each TP rank on its own rail."""
    return 2.0 * plan.micro_batch * model.seq_len * model.hidden / plan.tp


def _neighbour(plan: ParallelPlan, s: int, c: int, step: str) -> tuple[int, int] | None:
    """(stage, chunk) that sends this step its input: the previous virtual stage for a
    forward, the next one for a backward."""
    vs = c * plan.pp + s + (-1 if step == "F" else 1)
    if vs < 0 or vs >= plan.pp * plan.vpp:
        return None
    return vs % plan.pp, vs // plan.pp


def _tag(plan: ParallelPlan, mb: int, s: int, c: int, step: str) -> int:
    return ((mb * plan.vpp + c) * plan.pp + s) * 2 + (step == "B")


def _add_recvs(g, plan, stages, steps, model, opts) -> dict:
    recv, nbytes = {}, _p2p_bytes(model, plan)
    for st in stages:
        for mb, c, step in steps[st.index]:
            src = _neighbour(plan, st.index, c, step)
            if src is None or plan.pp == 1:
                continue
            op = SendRecv("recv", stages[src[0]].rank, nbytes, _tag(plan, mb, st.index, c, step))
            stream = "recv_fwd" if step == "F" else "recv_bwd"
            recv[(st.index, mb, c, step)] = g.add(st.rank, stream, op, (), "pp",
                                                  f"recv_{step}{mb}_c{c}", mb=mb, chunk=c)
    return recv


def _add_compute(g: ExecutionGraph, plan: ParallelPlan, st: _Stage, steps, recv) -> None:
    m = plan.microbatches
    split = plan.dp > 1
    for mb, c, step in steps:
        deps = [recv.get((st.index, mb, c, step))]
        if step == "B" and _is_last(plan, st.index, c):
            deps.append(st.node[(mb, c, "F")])     # loss gradient starts from the forward
        if step == "F":
            st.node[(mb, c, "F")] = g.add(st.rank, "compute", st.fwd[c], deps, "compute",
                                         f"F{mb}_c{c}", mb=mb, chunk=c)
        elif mb == m - 1 and split:
            st.node[(mb, c, "B")] = _split_backward(g, plan, st, mb, c, deps)
        else:
            st.node[(mb, c, "B")] = g.add(st.rank, "compute", st.bwd[c], deps, "compute",
                                         f"B{mb}_c{c}", mb=mb, chunk=c)


def _split_backward(g, plan, st: _Stage, mb: int, c: int, deps) -> int:
    """The chunk's last backward, one node per layer, so gradient buckets can start early."""
    ctx, per_chunk = st.ctx, st.layers // plan.vpp
    layer = Block(tuple(layer_recompute(ctx, plan.recompute) + layer_backward(ctx)), f"bwd_layer_c{c}")
    nodes = []
    for i in range(per_chunk):
        ops = layer.ops
        if i == 0 and _is_last(plan, st.index, c):
            ops = tuple(head_backward(ctx)) + ops
        if i == per_chunk - 1 and _is_first(plan, st.index, c):
            ops = ops + tuple(embedding_backward(ctx))
        block = layer if ops is layer.ops else Block(ops, layer.name)
        nodes.append(g.add(st.rank, "compute", block, deps if i == 0 else (), "compute",
                           f"B{mb}_c{c}_l{per_chunk - 1 - i}", mb=mb, chunk=c))
    st.last_bwd_layers[c] = nodes
    return nodes[-1]


def _add_sends(g, plan, stages, steps, recv) -> None:
    for (s, mb, c, step), rid in recv.items():
        src_stage, src_chunk = _neighbour(plan, s, c, step)
        sender = stages[src_stage]
        op = g.nodes[rid].op
        produced = sender.node[(mb, src_chunk, step)]
        stream = "send_fwd" if step == "F" else "send_bwd"
        g.add(sender.rank, stream, SendRecv("send", stages[s].rank, op.bytes, op.tag), (produced,),
              "pp", f"send_{step}{mb}_c{src_chunk}", mb=mb, chunk=src_chunk)


def _add_grad_sync(g, model, plan, opts: TrainingOptions, st: _Stage) -> None:
    """DP gradient buckets (overlapping the last backward), tied-embedding sync, optimizer."""
    params = stage_params(model, plan, st.index)
    dp_group = CommGroup(plan.dp_group(st.index), "dp")
    syncs = []
    if plan.dp > 1:
        kind = "reduce_scatter" if plan.zero >= 1 else "all_reduce"
        last_compute = max(st.node.values())
        for i, (n_params, dep) in enumerate(_buckets(model, plan, opts, st, params)):
            deps = (dep,) if opts.overlap_grad_reduce else (last_compute,)
            op = Collective(kind, n_params * opts.grad_bytes, dp_group, seq=i, name=f"grad_{kind}")
            syncs.append(g.add(st.rank, "dp", op, deps, "dp", f"dp_bucket{i}"))
    if plan.pp > 1 and model.tied_embeddings and st.index in (0, plan.pp - 1):
        pair = CommGroup((plan.rank(0, 0, 0), plan.rank(0, 0, plan.pp - 1)), "dp")
        op = Collective("all_reduce", model.vocab * model.hidden / plan.tp * opts.grad_bytes, pair,
                        name="embedding_grad_sync")
        syncs.append(g.add(st.rank, "dp", op, (max(st.node.values()),), "dp", "embedding_sync"))
    shard = params / (plan.dp if plan.zero >= 1 else 1)
    opt = Compute("optimizer", 0.0, shard * ADAM_BYTES_PER_PARAM, "fp32", name="adam")
    step = g.add(st.rank, "compute", opt, syncs, "compute", "optimizer")
    if plan.zero >= 1 and plan.dp > 1:
        gather = Collective("all_gather", params * 2.0, dp_group, seq=10**6, name="param_all_gather")
        g.add(st.rank, "dp", gather, (step,), "dp", "param_all_gather")


def _buckets(model, plan, opts, st: _Stage, params: float):
    """(params, ready node) per bucket: layers in the order their gradients complete."""
    per_layer = model.params_per_layer / plan.tp
    ready: list[tuple[float, int]] = []
    for c in reversed(range(plan.vpp)):
        nodes = st.last_bwd_layers.get(c, [])
        ready += [(per_layer, n) for n in nodes]
    extra = params - per_layer * st.layers        # embeddings: ready with the last layer
    if ready:
        ready[-1] = (ready[-1][0] + extra, ready[-1][1])
    buckets, acc = [], 0.0
    for n_params, node in ready:
        acc += n_params
        if acc >= opts.bucket_params:
            buckets.append((acc, node))
            acc = 0.0
    if acc > 0:
        buckets.append((acc, ready[-1][1]))
    return buckets
