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
from workloads.fsdp import Zero3
from workloads.graph import Block, Collective, CommGroup, ExecutionGraph, SendRecv
from workloads.layers import AttentionImpl, LayerContext
from workloads.model import ModelSpec
from workloads.moe_training import MoEOptions
from workloads.offload import ActivationOffload, OffloadOptions
from workloads.parallel import ParallelPlan
from workloads.param_sync import (  # the layout helpers are re-exported: training.stage_params
    ADAM_BYTES_PER_PARAM,  # noqa: F401
    add_grad_sync,
    gathers_overlap,
    pipeline_of,
    stage_params,  # noqa: F401
    unit_params,
    zero2_reduce_scatter,
)
from workloads.pipeline import SPLIT_BACKWARD, Pipeline
from workloads.pipeline_sync import BlockingSends, gather_received
from workloads.stage_ops import StageOps, build_stage_ops, local_context, pair_block


@dataclass(frozen=True)
class TrainingOptions:
    dtype: str = "bf16"                 # GEMM precision
    attention: AttentionImpl = "flash"
    repeat_kv: bool = False             # GQA K,V expanded to every query head (layers.LayerContext)
    grad_bytes: int = 4                 # bytes per gradient element in the DP reduction
    overlap_grad_reduce: bool = True
    # overlap_grad_reduce off: each pipeline (virtual) stage's gradients reduced once its
    # own last backward has run (PyTorch pipelining's FSDP post_backward), not after the step
    grad_reduce_per_stage: bool = False
    bucket_params: float = 40e6         # Megatron-LM's default DDP bucket (40M elements)
    param_bytes: int = 2                # 16-bit model weights: what ZeRO all-gathers (fp8 params: 1)
    fp8_recipe: str | None = None       # workloads/fp8.py; None: GEMMs in ``dtype``
    fp8_fused_amax: bool = False        # tensorwise amax reduced in the producer kernel (compiled)
    fp8_fused_rht_cast: bool = True     # nvfp4: one quantize kernel for both copies (TE 2.14+)
    fp8_attention: bool = False         # FP8 dot-product attention (layers.LayerContext)
    offload: OffloadOptions = OffloadOptions()   # workloads/offload.py
    # ZeRO-1/2 (distributed optimizer): all-gather the updated parameters bucket by bucket
    # under the next step's first forward (Megatron-Core ``overlap_param_gather``) instead
    # of after the optimizer.
    overlap_param_gather: bool = False
    moe: MoEOptions | None = None       # dispatcher, routing, overlap (workloads/moe_training.py)
    cross_entropy_fusion: bool = True   # False: Megatron's unfused loss (workloads/layers.py)
    logprob_loss: bool = False          # an RL framework's per-token log-probability (layers.py)
    torch_cross_entropy: bool = False   # F.cross_entropy on fp32 logits (layers.py, TorchTitan)
    adam: str = "fused"                 # "foreach": PyTorch's multi-tensor AdamW (param_sync.py)
    adam_moment_bytes: int = 4          # 2: Adam's moments in bf16 (precision-aware optimizer)
    optimizer: str = "adam"             # "muon": Newton-Schulz on the 2-D weights (workloads/muon.py)
    muon_ns_steps: int = 5              # Newton-Schulz steps per Muon matrix
    fsdp2_copies: bool = False          # FSDP2's per-layer copy-out / copy-in (workloads/fsdp.py)
    fsdp2_root_group: bool = False      # embedding, norm, output in the root's group (workloads/fsdp.py)
    tp_seq_dim_copies: bool = False     # DTensor SP's chunk-and-cat per TP collective (layers.py)
    dtensor_tp: bool = False            # TP linears as DTensor (TorchTitan), not Megatron / TE's
    separate_projections: bool = False  # wq / wk / wv and w1 / w3 as separate GEMMs (layers.py)
    complex_rope: bool = False          # RoPE as an eager complex multiply (layers.py rope_ops)
    fp8_tp_gather: bool = False         # TP all-gathers of FP8 linears' inputs/grads in FP8 (layers.py)
    p2p_blocking: bool = False          # compute waits for its sends (workloads/pipeline_sync.py)
    grad_accumulation_fusion: bool = True   # False: per-microbatch main-grad adds (layers.py)
    async_grad_reduce: bool = True      # TP input-gradient reduce beside the wgrad (stage_ops.py)

    @property
    def grad_accum_bytes(self) -> int:
        """Bytes per parameter of each microbatch's main-gradient add (0: fused)."""
        return 0 if self.grad_accumulation_fusion else 2 * self.grad_bytes + self.param_bytes

    def layer_options(self) -> dict:
        """The options a stage's layer context takes (stage_ops.local_context)."""
        return {"fused_loss": self.cross_entropy_fusion, "grad_accum_bytes": self.grad_accum_bytes,
                "repeat_kv": self.repeat_kv, "fp8_attention": self.fp8_attention,
                "logprob_loss": self.logprob_loss, "torch_loss": self.torch_cross_entropy,
                "tp_seq_dim_copies": self.tp_seq_dim_copies,
                "separate_projections": self.separate_projections,
                "complex_rope": self.complex_rope, "megatron_linears": not self.dtensor_tp,
                "async_grad_reduce": self.async_grad_reduce,
                "tp_gather_bytes": 1 if self.fp8_tp_gather and self.fp8_recipe else 0}


@dataclass
class Stage:
    index: int
    rank: int
    ctx: LayerContext
    layers: int
    pipe: Pipeline
    ops: StageOps
    w: list[Block] = field(default_factory=list)       # per chunk: weight-gradient pass
    gathered: set = field(default_factory=set)         # chunks whose first forward is placed
    gathers: list = field(default_factory=list)        # overlap_param_gather: per chunk, layer
    inp: list[Block] = field(default_factory=list)     # per chunk: input-gradient pass
    fwd: list[Block] = field(default_factory=list)     # per chunk
    bwd: list[Block] = field(default_factory=list)     # per chunk
    node: dict = field(default_factory=dict)            # (mb, chunk, pass) -> node id
    last_bwd_layers: dict = field(default_factory=dict)  # chunk -> [node per layer, backward order]
    bwd_layers: dict = field(default_factory=dict)   # (mb, chunk) -> [node per layer, backward order]
    grad_rs: list = field(default_factory=list)      # ZeRO-2/3 reduce-scatters issued in backward


def build(model: ModelSpec, plan: ParallelPlan, opts: TrainingOptions) -> ExecutionGraph:
    pipe = pipeline_of(plan, model.layers)
    stages = [make_stage(model, plan, opts, s) for s in range(plan.pp)]
    g = ExecutionGraph(plan.world, tuple(st.rank for st in stages),
                       meta={"kind": "training", "microbatches": plan.microbatches,
                             "overlap_pairs": []})
    steps = {st.index: pipe.steps(st.index) for st in stages}
    recv = _add_recvs(g, plan, stages, steps, model, opts)
    sync = (BlockingSends(recv, lambda s, c, step: _neighbour(plan, s, c, step))
            if opts.p2p_blocking and plan.effective_schedule not in SPLIT_BACKWARD else None)
    for st in stages:
        _add_compute(g, plan, st, steps[st.index], recv, model, opts, sync)
    _add_sends(g, plan, stages, steps, recv, sync.sent if sync else ())
    for st in stages:
        add_grad_sync(g, model, plan, opts, st)
    return g


def stage_forward(model: ModelSpec, plan: ParallelPlan, opts: TrainingOptions, stage: int) -> Block:
    """The forward pass of one pipeline stage's first chunk, as ``build`` plays it
    (forward-only passes reuse it: RL log-prob passes, workloads/rl.py)."""
    return make_stage(model, plan, opts, stage).fwd[0]


def stage_layer_ops(model: ModelSpec, plan: ParallelPlan, opts: TrainingOptions,
                    s: int) -> tuple[LayerContext, StageOps]:
    """The layer context and layer ops of pipeline stage ``s``: every option that changes
    a layer's kernels (``opts.layer_options``, FP8 recipe, context parallelism, TP overlap,
    MoE groups) enters here, for the graph builder and the sweep's closed forms alike
    (sim/sweep/estimate.py, estimate_moe.py)."""
    ctx = local_context(model, plan, opts.dtype, CommGroup(plan.tp_group(s), "tp"), opts.attention,
                        moe_training.context(model, plan, opts.moe, s), **opts.layer_options())
    heads = (None if model.uniform else (moe_training.head_fwd, moe_training.head_bwd))
    return ctx, build_stage_ops(ctx, plan, plan.recompute, opts.fp8_recipe, plan.cp_group(s),
                                heads, fused_amax=opts.fp8_fused_amax,
                                fused_rht_cast=opts.fp8_fused_rht_cast)


def make_stage(model: ModelSpec, plan: ParallelPlan, opts: TrainingOptions, s: int) -> Stage:
    """Pipeline stage ``s``: its layer context, ops and chunk blocks (``build``'s stages;
    the sweep's ZeRO-3 play records a MoE stage's passes from it, sim/sweep/zero3_play.py)."""
    pipe = pipeline_of(plan, model.layers)
    ctx, ops = stage_layer_ops(model, plan, opts, s)
    layers = pipe.rank_layers(s) if model.uniform else plan.stage_layers(model.layers)[s]
    st = Stage(s, plan.rank(0, 0, s), ctx, layers, pipe, ops)
    overlap = _overlap(opts)
    for c in range(plan.chunks):
        first, last = pipe.is_first(s, c), pipe.is_last(s, c)
        emb_f, emb_b = (ops.emb_fwd, ops.emb_bwd) if first else ((), ())
        head_f, head_b = (ops.head_fwd, ops.head_bwd) if last else ((), ())
        if model.uniform:
            n = pipe.chunk_layers(s, c)
            body = (ops.fwd * n, ops.bwd * n, ops.bwd_input * n, ops.bwd_weight * n)
        else:
            body = ops.rewrite_body(*moe_training.chunk_body(ctx, plan, s, c))
        st.fwd.append(Block(emb_f + body[0] + head_f, f"fwd_c{c}", overlap))
        st.bwd.append(Block(head_b + body[1] + emb_b, f"bwd_c{c}", overlap))
        st.inp.append(Block(head_b + body[2] + emb_b, f"bwd_input_c{c}", overlap))
        st.w.append(Block(body[3], f"bwd_weight_c{c}", overlap))
    return st


def _overlap(opts: TrainingOptions) -> tuple[str, ...]:
    """MoE all-to-all overlap (workload.moe.overlap): EP collectives hide behind compute."""
    return ("ep",) if opts.moe is not None and opts.moe.overlap else ()


def _is_first(plan: ParallelPlan, s: int, c: int, layers: int = 0) -> bool:
    return pipeline_of(plan, layers).is_first(s, c)


def _is_last(plan: ParallelPlan, s: int, c: int, layers: int = 0) -> bool:
    return pipeline_of(plan, layers).is_last(s, c)


def p2p_bytes(model: ModelSpec, plan: ParallelPlan) -> float:
    """Activation (or its gradient) between stages. Megatron's scatter-gather optimisation
    (SC'21 section 4.1) sends 1/t of it from each TP rank on its own rail; a CP rank sends
    its s/cp tokens. Under hyper-connections every copy of the residual stream crosses."""
    return 2.0 * plan.micro_batch * model.seq_len / plan.cp * model.residual_width / plan.tp


def _neighbour(plan: ParallelPlan, s: int, c: int, step: str) -> tuple[int, int] | None:
    """(stage, chunk) that sends this step its input (workloads.pipeline)."""
    return pipeline_of(plan, 0).neighbour(s, c, step)


def _tag(plan: ParallelPlan, mb: int, s: int, c: int, step: str) -> int:
    return ((mb * plan.chunks + c) * plan.pp + s) * 2 + (step != "F")


def _add_recvs(g, plan, stages, steps, model, opts) -> dict:
    recv, nbytes = {}, p2p_bytes(model, plan)
    neighbour = pipeline_of(plan, 0).neighbour      # = _neighbour(plan, ...), looked up once
    for st in stages:
        for mb, c, step in steps[st.index]:
            src = neighbour(st.index, c, step)
            if src is None or src[0] == st.index:   # the turn of a V stays on its rank
                continue
            op = SendRecv("recv", stages[src[0]].rank, nbytes, _tag(plan, mb, st.index, c, step))
            stream = _p2p_stream("recv", step, plan, src[0])
            recv[(st.index, mb, c, step)] = g.add(st.rank, stream, op, (), "pp",
                                                  f"recv_{step}{mb}_c{c}", mb=mb, chunk=c)
    return recv


def _add_compute(g: ExecutionGraph, plan: ParallelPlan, st: Stage, steps, recv, model: ModelSpec,
                 opts: TrainingOptions, sync: BlockingSends | None = None) -> None:
    z3 = Zero3(g, model, plan, opts, st) if plan.zero3_passes else None
    pairs = set(st.pipe.pairs(st.index))
    offload = ActivationOffload(g, st, opts.offload, offload_chunks(model, plan, opts, st.index))
    merged = set()
    if gathers_overlap(model, plan, opts):
        st.gathers = _param_gathers(g, model, plan, opts, st)
    for k, (mb, c, step) in enumerate(steps):
        if k in merged:
            continue
        inp = _input(recv, st, plan, mb, c, step)
        if plan.tp > 1 and not plan.sp and inp is not None and inp == recv.get((st.index, mb, c, step)):
            inp = gather_received(g, plan, st.rank, plan.tp_group(st.index), inp, (mb, c, step))
        deps = [inp, offload.before(mb, c, step)]
        if step in ("B", "I") and st.pipe.is_last(st.index, c):
            deps.append(st.node[(mb, c, "F")])     # loss gradient starts from the forward
        if k in pairs:      # an overlapped F&B pair starts when both inputs are there
            nmb, nc, nstep = steps[k + 1]
            deps.append(_input(recv, st, plan, nmb, nc, nstep))
            if _merge_pair(g, st, steps, k, deps, offload):
                merged.add(k + 1)
                continue
        if z3 is not None:
            nxt = steps[k + 1] if k + 1 < len(steps) else None
            st.node[(mb, c, step)] = z3.add_pass(mb, c, step, deps, nxt)
        else:
            st.node[(mb, c, step)] = _add_step(g, plan, model, opts, st, mb, c, step, deps)
        offload.after(st.node[(mb, c, step)], mb, c, step)
        if sync is not None:
            sync.after(g, st.index, st.rank, (mb, c, step), st.node[(mb, c, step)])
        if k - 1 in pairs:
            g.meta["overlap_pairs"].append((st.node[steps[k - 1]], st.node[(mb, c, step)]))
    if plan.effective_schedule in SPLIT_BACKWARD:
        _weights_ready(st, steps)


def _input(recv: dict, st: Stage, plan: ParallelPlan, mb: int, c: int, step: str) -> int | None:
    """The node a step waits for: the receive from the neighbouring stage, or, at the turn
    of a V (both stages on this rank), the rank's own earlier step."""
    got = recv.get((st.index, mb, c, step))
    src = _neighbour(plan, st.index, c, step)
    if got is not None or src is None or src[0] != st.index:
        return got
    other = "I" if step == "B" else "B"
    for key in ((mb, src[1], step), (mb, src[1], other)):
        if key in st.node:
            return st.node[key]
    raise ValueError(f"pipeline order of stage {st.index} runs {step}{mb} of chunk {c} "
                     f"before its input from chunk {src[1]}")


def _add_step(g, plan: ParallelPlan, model, opts, st: Stage, mb: int, c: int, step: str,
              deps) -> int:
    """The node of one (microbatch, chunk, pass); the last microbatch's backward per layer
    when DP gradient buckets overlap it (and every backward under ZeRO-2)."""
    split = plan.grad_dp > 1 and plan.effective_schedule not in SPLIT_BACKWARD
    if step == "F":
        if st.gathers and c not in st.gathered:     # the chunk's first forward, per layer
            st.gathered.add(c)
            return _split_forward(g, plan, st, mb, c, deps, st.gathers[c])
        return g.add(st.rank, "compute", st.fwd[c], deps, "compute", f"F{mb}_c{c}", mb=mb, chunk=c)
    if step in ("I", "W"):
        block = st.inp[c] if step == "I" else st.w[c]
        return g.add(st.rank, "compute", block, deps, "compute", f"{step}{mb}_c{c}", mb=mb, chunk=c)
    if split and (mb == plan.microbatches - 1 or plan.zero == 2):
        node = _split_backward(g, plan, st, mb, c, deps)
        if plan.zero == 2:
            zero2_reduce_scatter(g, model, plan, opts, st, mb, c)
        return node
    return g.add(st.rank, "compute", st.bwd[c], deps, "compute", f"B{mb}_c{c}", mb=mb, chunk=c)


def offload_chunks(model: ModelSpec, plan: ParallelPlan, opts: TrainingOptions,
                   stage: int) -> tuple[float, ...] | None:
    """Bytes each chunk of a non-uniform model's stage sends to the host per microbatch
    (workloads/offload_modules.py); None where every layer is alike."""
    if model.uniform or not opts.offload.moves_activations:
        return None
    from workloads import offload_modules
    load = moe_training.load(model, plan, opts.moe)
    return offload_modules.chunk_bytes(model, plan, opts.offload,
                                       load.rank_factor if load else 1.0, stage)


def _merge_pair(g, st: Stage, steps, k: int, deps: list, offload) -> bool:
    """An F&B pair with EP communication becomes one node (stage_ops.pair_block), so each
    chunk's all-to-alls hide behind the other's compute; both steps map to it."""
    (mb, c, _), (bmb, bc, bstep) = steps[k], steps[k + 1]
    block = pair_block(st.fwd[c], st.bwd[bc] if bstep == "B" else st.inp[bc])
    if block is None:
        return False
    if st.pipe.is_last(st.index, bc):
        deps.append(st.node[(bmb, bc, "F")])
    deps.append(offload.before(bmb, bc, bstep))
    node = g.add(st.rank, "compute", block, deps, "compute", f"F{mb}_c{c}+{bstep}{bmb}_c{bc}",
                 mb=mb, chunk=c)
    st.node[(mb, c, "F")] = st.node[(bmb, bc, bstep)] = node
    offload.after(node, mb, c, "F")
    offload.after(node, bmb, bc, bstep)
    g.meta["overlap_pairs"].append((node, node))
    return True


def _weights_ready(st: Stage, steps) -> None:
    """Split-backward schedules: a chunk's gradients are complete after its last B or W."""
    for c in range(len(st.fwd)):
        last = max(st.node[key] for key in st.node if key[1] == c and key[2] in ("B", "W"))
        st.last_bwd_layers[c] = [last] * st.pipe.chunk_layers(st.index, c)


def _split_backward(g, plan, st: Stage, mb: int, c: int, deps) -> int:
    """The chunk's last backward, one node per layer, so gradient buckets can start early."""
    ctx = st.ctx
    if ctx.model.uniform:
        per_chunk = st.pipe.chunk_layers(st.index, c)
        layer = Block(st.ops.bwd, f"bwd_layer_c{c}")
    else:
        ids = moe_training.chunk_layers(ctx.model, plan, st.index, c)
        per_chunk = len(ids)
    nodes = []
    if per_chunk == 0:                  # a stage holding only the embedding / the loss
        node = g.add(st.rank, "compute", st.bwd[c], deps, "compute", f"B{mb}_c{c}", mb=mb, chunk=c)
        st.last_bwd_layers[c], st.bwd_layers[(mb, c)] = [], [node]   # its grads: see layer_buckets
        return node
    for i in range(per_chunk):
        if not ctx.model.uniform:
            layer = Block(st.ops.transform(moe_training.layer_bwd_ops(ctx, plan,
                                                                      ids[per_chunk - 1 - i]), True),
                          f"bwd_layer_c{c}", st.bwd[c].overlap)
        ops = layer.ops
        if i == 0 and st.pipe.is_last(st.index, c):
            ops = st.ops.head_bwd + ops
        if i == per_chunk - 1 and st.pipe.is_first(st.index, c):
            ops = ops + st.ops.emb_bwd
        block = layer if ops is layer.ops else Block(ops, layer.name, layer.overlap)
        nodes.append(g.add(st.rank, "compute", block, deps if i == 0 else (), "compute",
                           f"B{mb}_c{c}_l{per_chunk - 1 - i}", mb=mb, chunk=c))
    st.last_bwd_layers[c] = nodes
    st.bwd_layers[(mb, c)] = nodes
    return nodes[-1]


def _param_gathers(g, model, plan, opts: TrainingOptions, st: Stage) -> list[list[int]]:
    """ZeRO-1/2 with ``overlap_param_gather``: the parameter all-gather of the step before,
    in buckets of ``bucket_params`` in forward order, issued on the DP channel at the start
    of the step; returns, per chunk and layer, the gather that layer's first forward waits
    for (the steady state of Megatron-Core's gather under the next forward)."""
    group = CommGroup(plan.dp_group(st.index), "dp")
    out: list[list[int]] = []
    acc, pending, seq = 0.0, [], 10**6
    for c in range(plan.chunks):
        out.append([])
        units = unit_params(model, plan, st.index, c)
        for n_params in units:
            acc += n_params
            pending.append((c, len(out[c])))
            out[c].append(-1)
            if acc >= opts.bucket_params or (c == plan.chunks - 1 and len(out[c]) == len(units)):
                op = Collective("all_gather", acc * opts.param_bytes, group, seq=seq,
                                name="param_all_gather")
                node = g.add(st.rank, "dp", op, (), "dp", "param_all_gather")
                for cc, i in pending:
                    out[cc][i] = node
                acc, pending, seq = 0.0, [], seq + 1
    return out


def _split_forward(g, plan, st: Stage, mb: int, c: int, deps, gathers: list[int]) -> int:
    """The chunk's first forward, one node per layer, each after its parameters' gather."""
    per_chunk = max(1, st.pipe.chunk_layers(st.index, c))
    node = None
    for i in range(per_chunk):
        ops = st.ops.fwd if st.pipe.chunk_layers(st.index, c) else ()
        if i == 0 and st.pipe.is_first(st.index, c):
            ops = st.ops.emb_fwd + ops
        if i == per_chunk - 1 and st.pipe.is_last(st.index, c):
            ops = ops + st.ops.head_fwd
        prev = list(deps) if node is None else [node]
        node = g.add(st.rank, "compute", Block(ops, f"fwd_layer_c{c}"), prev + [gathers[i]],
                     "compute", f"F{mb}_c{c}_l{i}", mb=mb, chunk=c)
    return node


def _p2p_stream(kind: str, step: str, plan: ParallelPlan, peer: int) -> str:
    """One stream per direction; split-backward schedules (DualPipe, V shapes) send each
    way to two peers: one stream per peer."""
    name = f"{kind}_{'fwd' if step == 'F' else 'bwd'}"
    return f"{name}_{peer}" if plan.effective_schedule in SPLIT_BACKWARD else name


def _add_sends(g, plan, stages, steps, recv, sent=()) -> None:
    sends = []
    neighbour = pipeline_of(plan, 0).neighbour      # = _neighbour(plan, ...), looked up once
    for (s, mb, c, step), rid in recv.items():
        if rid in sent:                 # already on the sender's compute stream (p2p_blocking)
            continue
        src_stage, src_chunk = neighbour(s, c, step)
        sender = stages[src_stage]
        key = (mb, src_chunk, step)
        if key not in sender.node:      # a gradient from the sender's full or input-only backward
            key = (mb, src_chunk, "I" if step == "B" else "B")
        sends.append((sender.node[key], src_stage, s, mb, src_chunk, step, rid))
    if plan.effective_schedule in SPLIT_BACKWARD:
        sends.sort()                    # several peers per direction: in production order
    for produced, src_stage, s, mb, src_chunk, step, rid in sends:
        op = g.nodes[rid].op
        g.add(stages[src_stage].rank, _p2p_stream("send", step, plan, s),
              SendRecv("send", stages[s].rank, op.bytes, op.tag), (produced,),
              "pp", f"send_{step}{mb}_c{src_chunk}", mb=mb, chunk=src_chunk)


