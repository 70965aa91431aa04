"""Training-step graph builder: one iteration of a transformer under a ParallelPlan.

Symmetry: only one rank per pipeline stage is simulated (dp = 0, tp = 0); its TP peers
and DP replicas do identical work, and its collectives still name the full groups so
the network model sees their true size and placement. A (microbatch, chunk, pass) is one
Block node (the layers' kernels and the TP collectives between them, which are on the
critical path); the last microbatch's backward is split per layer so that DP gradient
buckets can overlap with it, as Megatron-LM's ``overlap_grad_reduce`` does.

Data-parallel communication per ZeRO stage (Rajbhandari et al. SC'20, section 7; PyTorch
FSDP, Zhao et al. VLDB'23), Ψ the stage's parameters on one TP rank, N = dp:

* 0 (DDP): gradient all-reduce buckets overlapping the last backward: 2Ψ(N-1)/N.
* 1 (optimizer states sharded; Megatron-LM's distributed optimizer): gradients are
  accumulated unsharded over the microbatches, reduce-scattered in the same buckets, the
  shard updated, the 16-bit parameters all-gathered: Ψ(N-1)/N + Ψ(N-1)/N.
* 2 (+ gradients sharded): a sharded gradient cannot accumulate unreduced, so every
  microbatch's backward reduce-scatters its buckets (DeepSpeed stage 2); then the
  optimizer and the parameter all-gather as in stage 1. One microbatch: 2Ψ(N-1)/N.
* 3 (+ parameters sharded, FSDP FULL_SHARD): per layer and microbatch an all-gather of
  the layer's parameters before its forward and again before its backward, and a
  reduce-scatter of its gradients after its backward: 3Ψ(N-1)/N per microbatch; no
  all-gather after the optimizer (the shard is what is kept). Prefetch of one layer
  (FSDP's default forward/backward prefetch): layer i's gather starts when layer i-1
  starts computing (the end of layer i-2), so it is exposed only where it is slower than
  the compute. With pipeline parallelism the gathers repeat for every microbatch
  (parameters are resharded after each use, the memory-saving choice; keeping them
  gathered, FSDP's ``reshard_after_forward=False``, would cost stage-2 memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workloads import moe_training
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
from workloads.moe_training import MoEOptions
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
    param_bytes: int = 2                # 16-bit model weights: what ZeRO all-gathers
    # ZeRO-1/2 (distributed optimizer): all-gather the updated parameters bucket by bucket
    # under the next step's first forward (Megatron-Core ``overlap_param_gather``) instead
    # of after the optimizer.
    overlap_param_gather: bool = False
    moe: MoEOptions | None = None       # dispatcher, routing, overlap (workloads/moe_training.py)


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
    bwd_layers: dict = field(default_factory=dict)   # (mb, chunk) -> [node per layer, backward order]
    grad_rs: list = field(default_factory=list)      # ZeRO-2/3 reduce-scatters issued in backward


def stage_params(model: ModelSpec, plan: ParallelPlan, stage: int) -> float:
    """Parameters held by one TP rank of a pipeline stage (embedding on the first stage,
    untied output layer on the last; positions are replicated). MoE models: the part
    replicated over dp (routed experts: moe_training.stage_split)."""
    if not model.uniform:
        return moe_training.stage_split(model, plan, stage)[0]
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
        _add_compute(g, plan, st, steps[st.index], recv, model, opts)
    _add_sends(g, plan, stages, steps, recv)
    for st in stages:
        _add_grad_sync(g, model, plan, opts, st)
    return g


def stage_forward(model: ModelSpec, plan: ParallelPlan, opts: TrainingOptions, stage: int) -> Block:
    """The forward pass of one pipeline stage's first chunk, as ``build`` plays it
    (forward-only passes reuse it: RL log-prob passes, workloads/rl.py)."""
    return _make_stage(model, plan, opts, stage).fwd[0]


def _make_stage(model: ModelSpec, plan: ParallelPlan, opts: TrainingOptions, s: int) -> _Stage:
    ctx = LayerContext(model, plan.micro_batch, plan.tp, plan.sp, opts.dtype,
                       CommGroup(plan.tp_group(s), "tp"), opts.attention,
                       moe=moe_training.context(model, plan, opts.moe, s))
    layers = plan.stage_layers(model.layers)[s]
    st = _Stage(s, plan.rank(0, 0, s), ctx, layers)
    per_chunk = layers // plan.vpp
    if model.uniform:
        fwd_l, bwd_l = layer_forward(ctx), layer_recompute(ctx, plan.recompute) + layer_backward(ctx)
    for c in range(plan.vpp):
        first, last = _is_first(plan, s, c), _is_last(plan, s, c)
        body_f, body_b = (fwd_l * per_chunk, bwd_l * per_chunk) if model.uniform \
            else moe_training.chunk_body(ctx, plan, s, c)
        f = (embedding_forward(ctx) if first else []) + body_f + (_head_fwd(ctx) if last else [])
        b = (_head_bwd(ctx) if last else []) + body_b + (embedding_backward(ctx) if first else [])
        st.fwd.append(Block(tuple(f), f"fwd_c{c}", _overlap(opts)))
        st.bwd.append(Block(tuple(b), f"bwd_c{c}", _overlap(opts)))
    return st


def _overlap(opts: TrainingOptions) -> tuple[str, ...]:
    """MoE all-to-all overlap (workload.moe.overlap): EP collectives hide behind compute."""
    return ("ep",) if opts.moe is not None and opts.moe.overlap else ()


def _head_fwd(ctx: LayerContext) -> list:
    return head_forward(ctx) if ctx.model.uniform else moe_training.head_fwd(ctx)


def _head_bwd(ctx: LayerContext) -> list:
    return head_backward(ctx) if ctx.model.uniform else moe_training.head_bwd(ctx)


def _is_first(plan: ParallelPlan, s: int, c: int) -> bool:
    return s == 0 and c == 0


def _is_last(plan: ParallelPlan, s: int, c: int) -> bool:
    return s == plan.pp - 1 and c == plan.vpp - 1


def p2p_bytes(model: ModelSpec, plan: ParallelPlan) -> float:
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
    recv, nbytes = {}, p2p_bytes(model, plan)
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


def _add_compute(g: ExecutionGraph, plan: ParallelPlan, st: _Stage, steps, recv, model: ModelSpec,
                 opts: TrainingOptions) -> None:
    m = plan.microbatches
    split = plan.dp > 1
    z3 = _Zero3(g, model, plan, opts, st) if plan.zero >= 3 and plan.dp > 1 else None
    gathers = _param_gathers(g, model, plan, opts, st) if _gathers_overlap(model, plan, opts) else None
    for k, (mb, c, step) in enumerate(steps):
        deps = [recv.get((st.index, mb, c, step))]
        if step == "B" and _is_last(plan, st.index, c):
            deps.append(st.node[(mb, c, "F")])     # loss gradient starts from the forward
        if z3 is not None:
            nxt = steps[k + 1] if k + 1 < len(steps) else None
            st.node[(mb, c, step)] = z3.add_pass(mb, c, step, deps, nxt)
        elif step == "F" and mb == 0 and gathers is not None:
            st.node[(mb, c, "F")] = _split_forward(g, plan, st, c, deps, gathers[c])
        elif step == "F":
            st.node[(mb, c, "F")] = g.add(st.rank, "compute", st.fwd[c], deps, "compute",
                                         f"F{mb}_c{c}", mb=mb, chunk=c)
        elif split and (mb == m - 1 or plan.zero == 2):
            st.node[(mb, c, "B")] = _split_backward(g, plan, st, mb, c, deps)
            if plan.zero == 2:
                _zero2_reduce_scatter(g, model, plan, opts, st, mb, c)
        else:
            st.node[(mb, c, "B")] = g.add(st.rank, "compute", st.bwd[c], deps, "compute",
                                         f"B{mb}_c{c}", mb=mb, chunk=c)


def _split_backward(g, plan, st: _Stage, mb: int, c: int, deps) -> int:
    """The chunk's last backward, one node per layer, so gradient buckets can start early."""
    ctx, per_chunk = st.ctx, st.layers // plan.vpp
    if ctx.model.uniform:
        layer = Block(tuple(layer_recompute(ctx, plan.recompute) + layer_backward(ctx)), f"bwd_layer_c{c}")
    else:
        ids = moe_training.chunk_layers(ctx.model, plan, st.index, c)
        per_chunk = len(ids)
    nodes = []
    for i in range(per_chunk):
        if not ctx.model.uniform:
            layer = Block(tuple(moe_training.layer_bwd_ops(ctx, plan, ids[per_chunk - 1 - i])),
                          f"bwd_layer_c{c}", st.bwd[c].overlap)
        ops = layer.ops
        if i == 0 and _is_last(plan, st.index, c):
            ops = tuple(_head_bwd(ctx)) + ops
        if i == per_chunk - 1 and _is_first(plan, st.index, c):
            ops = ops + tuple(embedding_backward(ctx))
        block = layer if ops is layer.ops else Block(ops, layer.name, layer.overlap)
        nodes.append(g.add(st.rank, "compute", block, deps if i == 0 else (), "compute",
                           f"B{mb}_c{c}_l{per_chunk - 1 - i}", mb=mb, chunk=c))
    st.last_bwd_layers[c] = nodes
    st.bwd_layers[(mb, c)] = nodes
    return nodes[-1]


def _gathers_overlap(model: ModelSpec, plan: ParallelPlan, opts: TrainingOptions) -> bool:
    """Dense models only: a MoE stage keeps its gather after the optimizer (its expert
    parameters shard over another group, workloads/moe_training.py)."""
    return opts.overlap_param_gather and plan.zero in (1, 2) and plan.dp > 1 and model.uniform


def _param_gathers(g, model, plan, opts: TrainingOptions, st: _Stage) -> list[list[int]]:
    """ZeRO-1/2 with ``overlap_param_gather``: the parameter all-gather of the step before,
    in buckets of ``bucket_params`` in forward order, issued on the DP channel at the start
    of the step; returns, per chunk and layer, the gather that layer's first forward waits
    for (the steady state of Megatron-Core's gather under the next forward)."""
    group = CommGroup(plan.dp_group(st.index), "dp")
    out: list[list[int]] = []
    acc, pending, seq = 0.0, [], 10**6
    for c in range(plan.vpp):
        out.append([])
        for n_params in unit_params(model, plan, st.index, c):
            acc += n_params
            pending.append((c, len(out[c])))
            out[c].append(-1)
            if acc >= opts.bucket_params or (c, len(out[c])) == (plan.vpp - 1, st.layers // plan.vpp):
                op = Collective("all_gather", acc * opts.param_bytes, group, seq=seq,
                                name="param_all_gather")
                node = g.add(st.rank, "dp", op, (), "dp", "param_all_gather")
                for cc, i in pending:
                    out[cc][i] = node
                acc, pending, seq = 0.0, [], seq + 1
    return out


def _split_forward(g, plan, st: _Stage, c: int, deps, gathers: list[int]) -> int:
    """The chunk's first forward, one node per layer, each after its parameters' gather."""
    ctx, per_chunk = st.ctx, st.layers // plan.vpp
    node = None
    for i in range(per_chunk):
        ops = tuple(layer_forward(ctx))
        if i == 0 and _is_first(plan, st.index, c):
            ops = tuple(embedding_forward(ctx)) + ops
        if i == per_chunk - 1 and _is_last(plan, st.index, c):
            ops = ops + tuple(head_forward(ctx))
        prev = list(deps) if node is None else [node]
        node = g.add(st.rank, "compute", Block(ops, f"fwd_layer_c{c}"), prev + [gathers[i]],
                     "compute", f"F0_c{c}_l{i}", mb=0, chunk=c)
    return node


def unit_params(model: ModelSpec, plan: ParallelPlan, stage: int, chunk: int) -> list[float]:
    """Parameters per layer of one chunk on one TP rank, in forward order; the embedding
    goes with the model's first layer, the untied output layer with its last. Summed over
    the chunks they are ``stage_params``."""
    if not model.uniform:
        return [u[0] for u in moe_training.unit_split(model, plan, stage, chunk)]
    n = plan.stage_layers(model.layers)[stage] // plan.vpp
    out = [model.params_per_layer / plan.tp] * n
    if _is_first(plan, stage, chunk):
        out[0] += model.vocab * model.hidden / plan.tp + (0 if model.rope else model.seq_len * model.hidden)
    if _is_last(plan, stage, chunk) and (not model.tied_embeddings or plan.pp > 1):
        out[-1] += model.vocab * model.hidden / plan.tp
    return out


def _zero2_reduce_scatter(g, model, plan, opts: TrainingOptions, st: _Stage, mb: int, c: int) -> None:
    """ZeRO-2: this microbatch's gradient buckets, reduce-scattered as its backward runs."""
    nodes = st.bwd_layers[(mb, c)]
    ready = list(zip(reversed(unit_params(model, plan, st.index, c)), nodes, strict=True))
    group = CommGroup(plan.dp_group(st.index), "dp")
    deps_all = opts.overlap_grad_reduce
    for n_params, node in _bucket(ready, opts.bucket_params):
        op = Collective("reduce_scatter", n_params * opts.grad_bytes, group, seq=len(st.grad_rs),
                        name="grad_reduce_scatter")
        st.grad_rs.append(g.add(st.rank, "dp", op, (node if deps_all else nodes[-1],), "dp",
                                f"dp_rs{len(st.grad_rs)}_mb{mb}", mb=mb, chunk=c))


def _bucket(ready: list[tuple[float, int]], size: float) -> list[tuple[float, int]]:
    """Group (params, ready node) in completion order into buckets of at least ``size``."""
    buckets, acc = [], 0.0
    for n_params, node in ready:
        acc += n_params
        if acc >= size:
            buckets.append((acc, node))
            acc = 0.0
    if acc > 0:
        buckets.append((acc, ready[-1][1]))
    return buckets


class _Zero3:
    """ZeRO-3 / FSDP passes of one stage: a compute node per layer, the gather of the next
    layer issued as the current one starts (prefetch 1), the gradient reduce-scatter after
    each backward layer, all on the stage's one DP channel (gathers and reduce-scatters
    share the NIC), a gather ahead of a reduce-scatter that became ready with it."""

    def __init__(self, g: ExecutionGraph, model: ModelSpec, plan: ParallelPlan,
                 opts: TrainingOptions, st: _Stage):
        self.g, self.model, self.plan, self.opts, self.st = g, model, plan, opts, st
        self.group = CommGroup(plan.dp_group(st.index), "dp")
        self.recent: list[int] = []       # compute nodes in stream order
        self.gathered: int | None = None  # gather already issued for the next pass's first layer
        self.seq = 0
        fwd, bwd = layer_forward(st.ctx), layer_recompute(st.ctx, plan.recompute) + layer_backward(st.ctx)
        self.layer = {"F": Block(tuple(fwd), "fwd_layer"), "B": Block(tuple(bwd), "bwd_layer")}

    def _units(self, c: int, step: str) -> list[float]:
        u = unit_params(self.model, self.plan, self.st.index, c)
        return u if step == "F" else u[::-1]

    def _collective(self, kind: str, nbytes: float, dep: int | None, name: str, mb: int, c: int) -> int:
        self.seq += 1
        op = Collective(kind, nbytes, self.group, seq=self.seq, name=name)
        return self.g.add(self.st.rank, "dp", op, (dep,) if dep is not None else (), "dp",
                          f"{name}{self.seq}", mb=mb, chunk=c)

    def _gather(self, n_params: float, mb: int, c: int) -> int:
        dep = self.recent[-2] if len(self.recent) >= 2 else (self.recent[-1] if self.recent else None)
        return self._collective("all_gather", n_params * self.opts.param_bytes, dep,
                                "zero3_param_all_gather", mb, c)

    def _block(self, c: int, step: str, i: int, n: int) -> Block:
        ctx, plan, s = self.st.ctx, self.plan, self.st.index
        base = self.layer[step]
        pre, post = [], []
        if step == "F":
            pre = embedding_forward(ctx) if i == 0 and _is_first(plan, s, c) else []
            post = head_forward(ctx) if i == n - 1 and _is_last(plan, s, c) else []
        else:
            pre = head_backward(ctx) if i == 0 and _is_last(plan, s, c) else []
            post = embedding_backward(ctx) if i == n - 1 and _is_first(plan, s, c) else []
        return base if not pre and not post else Block(tuple(pre) + base.ops + tuple(post), base.name)

    def add_pass(self, mb: int, c: int, step: str, deps, nxt) -> int:
        units = self._units(c, step)
        gather = self.gathered if self.gathered is not None else self._gather(units[0], mb, c)
        pending_rs = None
        for i, n_params in enumerate(units):
            block = self._block(c, step, i, len(units))
            node = self.g.add(self.st.rank, "compute", block, [*(deps if i == 0 else ()), gather],
                              "compute", f"{step}{mb}_c{c}_l{i}", mb=mb, chunk=c)
            self.recent.append(node)
            if i + 1 < len(units):
                gather = self._gather(units[i + 1], mb, c)
            elif nxt is not None:
                nmb, nc, nstep = nxt
                self.gathered = self._gather(self._units(nc, nstep)[0], nmb, nc)
            else:
                self.gathered = None
            if pending_rs is not None:
                self._reduce_scatter(*pending_rs, mb, c)
            pending_rs = (n_params, node) if step == "B" else None
        if pending_rs is not None:
            self._reduce_scatter(*pending_rs, mb, c)
        return node

    def _reduce_scatter(self, n_params: float, node: int, mb: int, c: int) -> None:
        rs = self._collective("reduce_scatter", n_params * self.opts.grad_bytes, node,
                              "zero3_grad_reduce_scatter", mb, c)
        self.st.grad_rs.append(rs)


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
    """DP gradient buckets (overlapping the last backward), tied-embedding sync, optimizer,
    and the parameter all-gather of ZeRO-1/2."""
    params = stage_params(model, plan, st.index)
    dp_group = CommGroup(plan.dp_group(st.index), "dp")
    syncs = []
    if plan.dp > 1 and plan.zero >= 2:
        syncs.append(st.grad_rs[-1])        # the DP channel is serial: the last one is the end
    elif plan.dp > 1:
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
    expert_gather = None
    if model.uniform:
        shard = params / (plan.dp if plan.zero >= 1 else 1)
        opt = Compute("optimizer", 0.0, shard * ADAM_BYTES_PER_PARAM, "fp32", name="adam")
    else:
        syncs += moe_training.add_expert_grad_sync(g, model, plan, opts, st, _bucket)
        opt, expert_gather = moe_training.optimizer_and_gather(model, plan, st.index, opts,
                                                               ADAM_BYTES_PER_PARAM)
    step = g.add(st.rank, "compute", opt, syncs, "compute", "optimizer")
    if plan.zero in (1, 2) and plan.dp > 1 and not _gathers_overlap(model, plan, opts):
        gather = Collective("all_gather", params * opts.param_bytes, dp_group, seq=10**6,
                            name="param_all_gather")
        g.add(st.rank, "dp", gather, (step,), "dp", "param_all_gather")
    if expert_gather is not None:
        g.add(st.rank, "dp", expert_gather, (step,), "dp", "expert_param_all_gather")


def _buckets(model, plan, opts, st: _Stage, params: float):
    """(params, ready node) per bucket: layers in the order their gradients complete."""
    per_layer = model.params_per_layer / plan.tp
    ready: list[tuple[float, int]] = []
    for c in reversed(range(plan.vpp)):
        nodes = st.last_bwd_layers.get(c, [])
        if not model.uniform:       # replicated part per layer (embedding/head in `extra`)
            per = [moe_training.layer_dense(model, plan, i) for i in
                   moe_training.chunk_layers(model, plan, st.index, c)]
            ready += list(zip(reversed(per), nodes, strict=False))
            continue
        ready += [(per_layer, n) for n in nodes]
    extra = params - sum(p for p, _ in ready)     # embeddings: ready with the last layer
    if ready:
        ready[-1] = (ready[-1][0] + extra, ready[-1][1])
    return _bucket(ready, opts.bucket_params)
