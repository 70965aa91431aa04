"""The ops of one pipeline stage's layers under a plan: context parallelism, FP8 recipe,
tensor-parallel communication overlap, and the backward split into input-gradient (I)
and weight-gradient (W) work for the zero-bubble and DualPipe schedules.

TP communication overlap (``tp_comm_overlap``, needs sequence parallelism as Megatron-
Core requires): each TP all-gather / reduce-scatter is pipelined with the GEMM that
consumes or produces it, in tp chunks (Megatron's userbuffers ring exchange, ``ring``;
TorchTitan's async TP micro-pipelining, ``async``): ``graph.Overlap`` with tp - 1 steps.
With an FP8 recipe the input is cast before the all-gather (the FP8 copy is gathered:
TE userbuffers, torchao's Float8 TP), so the cast runs ahead of the pair. ``async`` also
splits the GEMM per TP rank and adds the partial-sum kernel of PyTorch's fused
matmul/reduce-scatter (``tp_overlap``). What torch.compile's micro-pipeline pass does not
fuse stays a plain collective: the backward reduce-scatter of an input gradient summed
over several GEMMs (TorchTitan's separate wq / wk / wv and w1 / w3), and, with the
sequence sharded on dim 1 (DTensor), the fused ops' shard-major outputs are copied
where a BF16 weight-gradient GEMM reads them (``tp_overlap``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from workloads import fp8 as fp8_mod
from workloads.comm_sms import tp_overlap_sms
from workloads.cp import ContextParallel
from workloads.graph import Block, Collective, CommGroup, Compute, Overlap
from workloads.layers import (
    LayerContext,
    embedding_backward,
    embedding_forward,
    grad_accumulation,
    head_backward,
    head_forward,
    layer_backward,
    layer_forward,
    layer_recompute,
    separate_projections,
)


@dataclass(frozen=True)
class StageOps:
    fwd: tuple           # one layer's forward
    bwd: tuple           # recompute + full backward of one layer
    bwd_input: tuple     # recompute + input-gradient part (zero-bubble "I")
    bwd_weight: tuple    # weight-gradient GEMMs ("W")
    emb_fwd: tuple
    emb_bwd: tuple
    head_fwd: tuple
    head_bwd: tuple
    transform: Callable = field(default=lambda ops, backward=False: tuple(ops), compare=False)

    def rewrite_body(self, fwd: list, bwd: list) -> tuple[tuple, tuple, tuple, tuple]:
        """(forward, backward, input-gradient, weight-gradient) of a chunk built layer by
        layer elsewhere (MoE / MLA models), rewritten as this stage's layer ops are."""
        b = self.transform(bwd, True)
        return (self.transform(fwd), b, *split_wgrad(b))


def _is_wgrad(op) -> bool:
    return isinstance(op, Compute) and ("_wgrad" in op.name)


def _is_async_reduce(op) -> bool:
    return isinstance(op, Overlap) and op.name.endswith(ASYNC_REDUCE)


def split_wgrad(ops) -> tuple[tuple, tuple]:
    """(input-gradient, weight-gradient) ops of a backward, in order. A weight gradient
    run beside its linear's input-gradient reduction (``async_grad_reduce``) is split
    apart: the reduction stays with the input gradient, exposed, as it runs when the
    weight gradient is deferred."""
    inp: list = []
    wgt: list = []
    for o in ops:
        if _is_async_reduce(o):
            inp += o.hidden
            wgt += o.main
        else:
            (wgt if _is_wgrad(o) else inp).append(o)
    return tuple(inp), tuple(wgt)


def tp_overlap(ops: list, steps: int, mode: str = "ring", separate: tuple[str, ...] = (),
               shard_major_bytes: float = 0.0) -> list:
    """Pair each TP all-gather with the GEMM after it (FP8 casts in between run first)
    and each reduce-scatter with the GEMM before it; the GEMM loses the SMs the mode's
    communication kernels hold (workloads/comm_sms.py). ``async`` runs as PyTorch's
    SymmetricMemory ops do (``_fused_all_gather_matmul`` / ``_fused_matmul_reduce_scatter``
    in torch/distributed/_symmetric_memory): the GEMM is split into one kernel per TP
    rank along the tokens; the reduce-scatter is fused with the input-gradient GEMM whose
    output it reduces (``reduce_scatter(dY @ W^T)``), and its partial sums, moved by
    copy engines, are reduced by a separate kernel after the last one arrives.

    The pass (torch/_inductor/fx_passes/micro_pipeline_tp.py) fuses a reduce-scatter only
    when its input is one matmul's output (``_find_producer_matmul``: mm, _scaled_mm or
    reshape(mm)). ``separate``: the GEMMs (as workloads.layers names them) that are
    several linears on one gathered input, whose input gradient is the sum of their
    dgrads (TorchTitan's wq / wk / wv, w1 / w3): their backward reduce-scatter stays a
    plain one. DTensor's sequence-dim copies (``_seq_cat``, workloads.layers.tp_comm)
    belong to the funcol pattern the pass replaces, so they go with each fused
    collective and stay with the plain ones. ``shard_major_bytes``: the fused all-gather
    moves the gather dim to the front (``A_shard.movedim(gather_dim, 0)``) and returns
    the gathered input as a view of a shard-major buffer (``unflatten``); with the
    sequence on dim 1 and more than one sequence a rank, a weight-gradient GEMM's
    ``reshape`` of it to (tokens, hidden) cannot be a view, so it reads and writes the
    gathered tensor once (``shard_major_bytes``) before each weight gradient whose input
    (forward) or output gradient (backward) was gathered that way."""
    out: list = []
    i = 0
    while i < len(ops):
        op = ops[i]
        is_tp = isinstance(op, Collective) and op.group.dim == "tp" and op.kind in (
            "all_gather", "reduce_scatter")
        j = i + 1
        while is_tp and op.kind == "all_gather" and j < len(ops) and _seq_cat(ops[j]):
            j += 1
        k = j
        while is_tp and op.kind == "all_gather" and j < len(ops) and _cast(ops[j]):
            j += 1
        if is_tp and op.kind == "all_gather" and j < len(ops) and _gemm(ops[j]):
            out += ops[k:j]
            if mode == "async":
                out.append(_local_shard_copy(op, steps + 1, ops[j]))
            out.append(Overlap(_chunks(ops[j], steps + 1, mode), (op,), steps,
                               f"{ops[j].name}_tp_overlap", *tp_overlap_sms(mode, ops[j].name)))
            i = j + 1
            continue
        cat = out.pop() if (is_tp and op.kind == "reduce_scatter" and out
                            and _seq_cat(out[-1])) else None
        if is_tp and op.kind == "reduce_scatter" and out and _gemm(out[-1]) and not (
                mode == "async" and _sums_dgrads(out, separate)):
            after = []
            if mode == "async" and len(out) > 1 and _gemm(out[-2]) and out[-1].name.endswith(
                    "_wgrad") and out[-2].name == out[-1].name.replace("_wgrad", "_dgrad"):
                after.append(out.pop())              # the wgrad runs after the fused pair
            prev = out.pop()
            out.append(Overlap(_chunks(prev, steps + 1, mode), (op,), steps,
                               f"{prev.name}_tp_overlap", *tp_overlap_sms(mode, prev.name)))
            if mode == "async":
                out.append(_partials_reduce(op, steps + 1, prev))
            out += after
            i += 1
            continue
        if cat is not None:
            out.append(cat)
        out.append(op)
        i += 1
    if mode == "async" and shard_major_bytes:
        out = _shard_major_copies(out, shard_major_bytes)
    return out


# weight gradients that read an all-gathered operand: the layer input (qkv, mlp_up) or
# the output gradient (attn_proj, mlp_down; gathered before their dgrad)
_GATHERED_WGRAD = ("qkv_wgrad", "mlp_up_wgrad", "attn_proj_wgrad", "mlp_down_wgrad")


def _shard_major_copies(ops: list, nbytes: float) -> list:
    """A copy of the gathered (tokens, hidden) tensor (read and write ``nbytes`` / 2 each)
    before each weight gradient that reads a fused all-gather's shard-major output."""
    out: list = []
    for op in ops:
        if isinstance(op, Compute) and op.name in _GATHERED_WGRAD:
            out.append(Compute("elementwise", 0.0, nbytes, op.dtype,
                               name=f"{op.name}_shard_major_copy"))
        out.append(op)
    return out


def _sums_dgrads(out: list, separate: tuple[str, ...]) -> bool:
    """The reduce-scatter's input is an input gradient summed over several linears'
    dgrads: the GEMM before it (or before its weight gradient) is one of ``separate``."""
    names = {o.name for o in out[-2:] if isinstance(o, Compute)}
    return any(f"{g}_dgrad" in names for g in separate)


def _seq_cat(op) -> bool:
    return isinstance(op, Compute) and op.name.endswith("_seq_cat")


def _chunks(gemm: Compute, n: int, mode: str) -> tuple:
    """``async``: the GEMM as n kernels on 1/n of the tokens each (the first dimension of
    a forward or input-gradient GEMM, the reduced one of a weight gradient)."""
    if mode != "async" or not gemm.shape or len(gemm.shape) != 3:
        return (gemm,)
    m, nn, k = gemm.shape
    shape = (m, nn, k // n) if gemm.name.endswith("_wgrad") else (m // n, nn, k)
    return (replace(gemm, flops=gemm.flops / n, bytes=gemm.bytes / n, shape=shape),) * n


def _local_shard_copy(ag: Collective, n: int, gemm: Compute) -> Compute:
    """The rank's shard (1/n of the gathered ``ag.bytes``) read and written into its
    symmetric-memory buffer, then a barrier, before the first GEMM chunk:
    ``_pipelined_all_gather_and_consume`` issues the copy on the compute stream ahead of
    the local shard's GEMM ("giving up the chance to overlap" it, per its comment)."""
    return Compute("elementwise", 0.0, 2 * ag.bytes / n, gemm.dtype,
                   name=f"{gemm.name}_ag_local_copy")


def _partials_reduce(rs: Collective, n: int, gemm: Compute) -> Compute:
    """The n stacked partial outputs (the whole GEMM output, ``rs.bytes``) read and the
    rank's 1/n written: PyTorch's ``reduce_fn`` after ``_pipelined_produce_and_all2all``."""
    return Compute("elementwise", 0.0, rs.bytes * (1 + 1 / n), gemm.dtype,
                   name=f"{gemm.name}_rs_partials_sum")


# The column-parallel linears whose input is gathered under sequence parallelism, by the
# name of their input-gradient GEMM, and the SMs of userbuffers' bulk all-gather beside it
# (NeMo / Megatron-Bridge userbuffers configurations, training/comm_overlap.py at
# Megatron-Bridge 067f987: ``qkv_dgrad`` / ``fc1_dgrad`` BulkOverlapCfg, set_sm_margin
# False; the median over the H100 configurations of Llama 3 70B / 405B and GPT-3 20B /
# 175B, BF16 and FP8: qkv_dgrad 4 (4, 2, 8, 4), fc1_dgrad 2 (2, 2, 4, 2)).
# Megatron-Core's Mamba in_proj (megatron/core/ssm/mamba_mixer.py: a TE
# LayerNormColumnParallelLinear, ``tp_comm_buffer_name="fc1"``) and the shared experts'
# fc1 (SharedExpertMLP, a dense MLP's column-parallel fc1) gather their input's sequence
# shards as the MLP's fc1 does, with its userbuffer.
SP_REGATHER: dict[str, int] = {"qkv_dgrad": 4, "mlp_up_dgrad": 2, "mamba_in_proj_dgrad": 2,
                               "shared_fc1_dgrad": 2}


def sp_backward_gathers(ctx: LayerContext, ops: list, recipe: str | None = None,
                        mode: str = "none") -> list:
    """The backward all-gather of each column-parallel linear's saved input shard.

    With sequence parallelism Megatron's and Transformer Engine's column-parallel linears
    save the rank's sequence shard of their input, not the gathered input, and gather it
    again in the backward for the weight gradient (Korthikanti et al. 2023, section 4.2.2:
    "we store only the Y_i^s part ... and perform an extra all-gather in the backward
    pass ... overlap this communication with the computation required to compute
    gradient with respect to Y"). Megatron-LM (megatron/mpu/layers.py
    ``LinearWithGradAccumulationAndAsyncCommunication.backward`` at 80389ef, 2022) and TE
    (module/layernorm_linear.py ``ln_out_needs_gather``, layernorm_mlp.py, at 2.9-2.16)
    launch it asynchronously (``async_op=True``) before the input-gradient GEMM and wait
    for it before the weight gradient: the gather runs beside the dgrad, what it takes
    beyond it is exposed. Under userbuffers (``tp_comm_overlap: ring``: TE's
    ``ub_bulk_dgrad``, Megatron-Core's tp_comm_bulk_dgrad default) it is a bulk overlap
    whose kernels hold ``SP_REGATHER`` SMs beside the GEMM. Bytes per element: the
    activation's, or with a TE recipe the quantized copy the weight gradient reads (FP8
    delayed / current scaling: the row-wise FP8 data; MXFP8, blockwise, NVFP4: the
    column-wise copy and its scales; fp8.te_gather_bytes). DTensor's TP (TorchTitan, and
    PyTorch's async TP, ``async``, which only DTensor runs) saves the gathered input:
    nothing to add."""
    if not _megatron_sp(ctx) or mode == "async":
        return ops
    per_elem = fp8_mod.te_gather_bytes(recipe, 1) if recipe else ctx.act_bytes
    out: list = []
    for op in ops:
        if _gemm(op) and op.name in SP_REGATHER:
            m, k = op.shape[0], op.shape[1]          # dgrad (m, k, n): the input is (m, k)
            ag = Collective("all_gather", per_elem * m * k, ctx.tp_group,
                            name=op.name.replace("_dgrad", "_input_regather"))
            sms = SP_REGATHER[op.name] if mode == "ring" else 0
            op = Overlap((op,), (ag,), 1, f"{op.name}_sp_regather", sms, False, concurrent=True,
                         nccl=mode != "ring")
        out.append(op)
    return out


def _megatron_sp(ctx: LayerContext) -> bool:
    """Megatron's / Transformer Engine's TP linears under sequence parallelism (not
    DTensor's): they gather their input's sequence shards over the TP group."""
    return ctx.sp and ctx.tp > 1 and ctx.megatron_linears


ASYNC_REDUCE = "_async_grad_reduce"


def async_grad_reduce(ctx: LayerContext, ops: list, mode: str = "none") -> list:
    """The TP reduction of each linear's input gradient run beside its weight gradient.

    Megatron-LM's ``LinearWithGradAccumulationAndAsyncCommunication.backward``
    (megatron/mpu/layers.py at 80389ef, 2022; megatron/core/tensor_parallel/layers.py
    since) computes the input gradient, launches its reduce-scatter over the TP group
    with sequence parallelism (``_reduce_scatter_base(..., async_op=True)``), without it
    its all-reduce (``async_grad_allreduce``, ``--async-tensor-model-parallel-allreduce``,
    on by default; added in August 2021, cf7efd4), then runs the weight-gradient GEMM and
    waits for the handle. The overlap needs the collective scheduled ahead of the GEMM:
    until October 2022 a 3 us noop kernel "tried to force" that, since then (bdd9731)
    Megatron requires CUDA_DEVICE_MAX_CONNECTIONS=1 ("necessary for a speedup"), as
    Megatron-Core, NeMo and Megatron-Bridge set it; earlier code (``async_grad_reduce``
    False) is priced with the reduction after the GEMM. Transformer Engine's ``_Linear`` / ``_LayerNormLinear`` /
    ``_LayerNormMLP`` backward without userbuffers does the same
    (``reduce_scatter_along_first_dim(..., async_op=True)`` / ``allreduce(...,
    async_op=True)`` before the wgrad GEMM, ``wait`` after). The collective is issued as
    the GEMM is launched: ``Overlap(concurrent=True, nccl=True)``: max(reduction, wgrad +
    reduction x k/S), the GEMM losing the k SMs of NCCL's CTAs while the reduction runs. Under userbuffers (``ring``) ``tp_overlap`` already pairs
    the reduce-scatter with the weight gradient (bulk overlap); DTensor's TP and
    Megatron-LM before October 2022 (``async_grad_reduce`` False) run it after."""
    if mode != "none" or not (ctx.tp > 1 and ctx.megatron_linears and ctx.async_grad_reduce):
        return ops
    out: list = []
    for op in ops:
        if (isinstance(op, Collective) and op.group.dim == "tp"
                and op.kind in ("reduce_scatter", "all_reduce") and out and _is_wgrad(out[-1])):
            w = out.pop()
            op = Overlap((w,), (op,), 1, f"{w.name}{ASYNC_REDUCE}", concurrent=True, nccl=True)
        out.append(op)
    return out


def _cast(op) -> bool:
    return isinstance(op, Compute) and "_cast_" in op.name


def _gemm(op) -> bool:
    return isinstance(op, Compute) and op.op_class == "gemm"


def build_stage_ops(ctx: LayerContext, plan, recompute: str, fp8_recipe: str | None,
                    cp_group: tuple[int, ...], heads: tuple[Callable, Callable] | None = None,
                    fused_amax: bool = False, fused_rht_cast: bool = True) -> StageOps:
    """``ctx`` is built on the rank's local tokens (s / cp); ``heads``: the model's own
    output head (forward, backward) builders where it differs (MoE models' MTP)."""
    head_f, head_b = heads or (head_forward, head_backward)
    cp = ContextParallel(plan, cp_group) if plan.cp > 1 else None
    amax_group = ctx.tp_group if _megatron_sp(ctx) else None

    def tx(ops: list, backward: bool = False) -> tuple:
        if cp is not None:
            ops = cp.rewrite(ctx, ops, backward)
        if fp8_recipe:
            ops = fp8_mod.rewrite(ops, fp8_recipe, fused_amax, fused_rht_cast, amax_group,
                                  ctx.megatron_linears, plan.tp_comm_overlap == "ring",
                                  ctx.act_bytes)
        return sp_backward_gathers(ctx, ops, fp8_recipe, plan.tp_comm_overlap) if backward else ops

    # TorchTitan's async TP: separate wq / wk / wv (and w1 / w3 when gated) on one gathered
    # input; with DTensor's dim-1 sequence shards and more than one sequence a rank, the
    # BF16 weight gradients copy the shard-major gathered tensors (FP8 GEMMs already
    # re-lay their operands out: workloads/fp8.py's transposed copy)
    separate = ("qkv", "mlp_up") if ctx.model.gated else ("qkv",)
    shard_major = (2.0 * ctx.act_bytes * ctx.tokens * ctx.model.hidden
                   if ctx.tp_seq_dim_copies and ctx.micro_batch > 1 and not fp8_recipe else 0.0)

    def tp(ops: list) -> tuple:
        if plan.tp_comm_overlap != "none" and plan.tp > 1:
            ops = tp_overlap(ops, plan.tp - 1, plan.tp_comm_overlap, separate, shard_major)
        return tuple(async_grad_reduce(ctx, separate_projections(ctx, ops), plan.tp_comm_overlap))

    def both(ops: list, backward: bool = False) -> tuple:
        return tp(tx(list(ops), backward))

    heads_only = not ctx.model.uniform          # MoE / MLA: layers come chunk by chunk
    fwd = [] if heads_only else tx(layer_forward(ctx))
    bwd = [] if heads_only else (tx(layer_recompute(ctx, recompute))
                                 + tx(layer_backward(ctx), backward=True)
                                 + grad_accumulation(ctx, ctx.model.params_per_layer / plan.tp))
    bwd_input, bwd_weight = (list(p) for p in split_wgrad(bwd))
    table = ctx.model.vocab * ctx.model.hidden / plan.tp     # the TP rank's embedding rows
    own_head = plan.owns_head_table(ctx.model.tied_embeddings)
    return StageOps(tp(fwd), tp(bwd), tp(bwd_input), tuple(separate_projections(ctx, bwd_weight)),
                    both(embedding_forward(ctx)),
                    both(embedding_backward(ctx) + grad_accumulation(ctx, table), True),
                    both(head_f(ctx)),
                    both(head_b(ctx) + (grad_accumulation(ctx, table) if own_head else []), True),
                    both)


def local_context(model, plan, dtype: str, tp_group: CommGroup, attention,
                  moe=None, fused_loss: bool = True, grad_accum_bytes: int = 0,
                  repeat_kv: bool = False, fp8_attention: bool = False,
                  logprob_loss: bool = False, torch_loss: bool = False,
                  tp_seq_dim_copies: bool = False, tp_gather_bytes: int = 0,
                  separate_projections: bool = False, complex_rope: bool = False,
                  megatron_linears: bool = True, async_grad_reduce: bool = True) -> LayerContext:
    """Layer context of one rank: the sequence shortened to its s/cp tokens."""
    local = model.with_seq_len(model.seq_len // plan.cp) if plan.cp > 1 else model
    return LayerContext(local, plan.micro_batch, plan.tp, plan.sp, dtype, tp_group, attention,
                        moe=moe, fused_loss=fused_loss, grad_accum_bytes=grad_accum_bytes,
                        repeat_kv=repeat_kv, fp8_attention=fp8_attention,
                        logprob_loss=logprob_loss, torch_loss=torch_loss,
                        tp_seq_dim_copies=tp_seq_dim_copies, tp_gather_bytes=tp_gather_bytes,
                        separate_projections=separate_projections, complex_rope=complex_rope,
                        megatron_linears=megatron_linears,
                        async_grad_reduce=async_grad_reduce)


def _is_ep(op) -> bool:
    return isinstance(op, Collective) and op.group.dim == "ep"


def pair_block(fwd: Block, bwd: Block) -> Block | None:
    """DualPipe's overlapped forward&backward of two microbatches as one block: the
    expert-parallel all-to-alls of both chunks (dispatch, combine) run beside the pair's
    compute, one transfer per step (DeepSeek-V3 section 3.2.1). None when the chunks have
    no EP communication to hide (dense models: the pair stays two nodes)."""
    rest, ep = split_ep(fwd.ops + bwd.ops)
    if not ep:
        return None
    return Block((pair_overlap(rest, ep),), f"{fwd.name}+{bwd.name}")


def split_ep(ops) -> tuple[tuple, tuple]:
    """(the rest, the expert-parallel collectives) of ``ops``, each in order."""
    return tuple(o for o in ops if not _is_ep(o)), tuple(o for o in ops if _is_ep(o))


def pair_overlap(rest: tuple, ep: tuple) -> Overlap:
    """A DualPipe pair's overlap: the EP transfers ``ep`` beside the ``rest`` of both
    chunks, one transfer per step (the first share of the compute runs alone)."""
    return Overlap(rest, ep, len(ep), "dualpipe_pair")
