"""Where a pipeline stage's parameters lie and how its data-parallel copies stay in step.

The parameter layout of one TP rank (per stage, chunk and layer: ``stage_params``,
``unit_params``), and the end of a training step on one stage (``add_grad_sync``): the
data-parallel gradient buckets in the order the backward completes them (all-reduce, or
reduce-scatter under ZeRO-1, or the per-microbatch reduce-scatters of ZeRO-2), the
tied-embedding gradient sync between the first and last stage, the optimizer step (on
the GPU or the host), and the parameter all-gather of ZeRO-1/2. The volumes per ZeRO
stage are listed in workloads/training.py's docstring.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from workloads import moe_training, muon
from workloads.fsdp import hsdp_replica_all_reduce
from workloads.graph import Collective, CommGroup, Compute, Memory
from workloads.model import ModelSpec
from workloads.offload import optimizer_on_host
from workloads.parallel import ParallelPlan
from workloads.pipeline import Pipeline

if TYPE_CHECKING:
    from workloads.training import Stage, TrainingOptions

# Mixed-precision Adam step (Megatron-LM fused Adam, fp32 master weights): reads master
# weight, fp32 grad, m, v (16 B) and writes master, m, v and the 16-bit copy (14 B), plus
# one fp32 read of the grad for the global grad-norm (Megatron's clip_grad_norm).
ADAM_BYTES_PER_PARAM = 16 + 14 + 4
# PyTorch's multi-tensor AdamW (torch.optim.AdamW(foreach=True), _multi_tensor_adamw, as
# TorchTitan builds it: fused=False, foreach=True), one pass per _foreach op over the fp32
# shard (bytes per parameter): weight decay mul_ on the params (8), lerp_ of m toward the
# grad (12), mul_ of v (8), addcmul_ of grad x grad into v (12), sqrt of v into a new
# tensor (8), div_ by the bias correction (8), add_ eps (8), addcdiv_ of the params (16):
# 80; no 16-bit copy (FSDP2 casts in its all-gather copy-in). torch.nn.utils
# clip_grad_norm_(foreach=True): _foreach_norm of the grads (4) and _foreach_mul_ by the
# clip coefficient, which it applies whether or not the norm exceeds max_norm (8): 12.
ADAM_FOREACH_BYTES_PER_PARAM = 80 + 12


def grad_reduce_kind(plan: ParallelPlan, opts: TrainingOptions) -> str:
    """The data-parallel gradient collective before the step: a reduce-scatter under
    ZeRO-1 (each rank keeps its shard), an all-reduce without it and under Muon's
    layer-wise optimizer, whose ranks each step whole matrices (workloads/muon.py)."""
    return "reduce_scatter" if plan.zero >= 1 and opts.optimizer != "muon" else "all_reduce"


def optimizer_ops(model: ModelSpec, plan: ParallelPlan, stage: int, opts: TrainingOptions,
                  params: float) -> list[Compute]:
    """One rank's optimizer step on the GPU: Adam over its shard of ``params`` (a uniform
    model's; MoE: moe_training.optimizer_shard), or Muon (workloads/muon.py)."""
    if opts.optimizer == "muon":
        return muon.step_ops(model, plan, stage, opts.muon_ns_steps, adam_bytes(opts))
    return [Compute("optimizer", 0.0, adam_shard(model, plan, stage, params) * adam_bytes(opts),
                    "fp32", name="adam")]


def adam_shard(model: ModelSpec, plan: ParallelPlan, stage: int, params: float) -> float:
    """Parameters whose Adam states one rank holds and steps."""
    if model.uniform:
        return plan.optimizer_shard(params)
    return moe_training.optimizer_shard(plan, *moe_training.stage_split(model, plan, stage))


def optimizer_states_moves(g, model: ModelSpec, plan: ParallelPlan, opts: TrainingOptions,
                           st: Stage, params: float) -> int:
    """Megatron-Core's ``offload_optimizer_states`` (OptimizerStateOffloader): the master
    weights and Adam moments (memory.adam_state_bytes a parameter of the rank's shard) went
    to the host after the previous step, on the device-to-host stream at the step's start
    (where they meet this step's activation copies), and come back on the host-to-device
    stream once the stage's last backward is done; the optimizer step waits for them.
    Returns the reload."""
    from workloads.memory import adam_state_bytes
    nbytes = adam_shard(model, plan, st.index, params) * adam_state_bytes(opts.adam_moment_bytes)
    g.add(st.rank, "offload_d2h", Memory("d2h", nbytes), (), "memory", "optimizer_states_to_host")
    return g.add(st.rank, "offload_h2d", Memory("h2d", nbytes), (max(st.node.values()),),
                 "memory", "optimizer_states_to_device")


def adam_bytes(opts: TrainingOptions) -> int:
    """HBM bytes per parameter of the optimizer step and the grad-norm clipping; with bf16
    moments the fused step reads and writes each moment in 2 bytes, not 4."""
    if opts.adam == "foreach":
        return ADAM_FOREACH_BYTES_PER_PARAM
    return ADAM_BYTES_PER_PARAM - 4 * (4 - opts.adam_moment_bytes)


@lru_cache(maxsize=64)
def pipeline_of(plan: ParallelPlan, layers: int) -> Pipeline:
    return plan.pipeline(layers)


def stage_params(model: ModelSpec, plan: ParallelPlan, stage: int) -> float:
    """Parameters held by one TP rank of a pipeline stage (embedding with the first
    virtual stage, the output layer with the last unless it is tied and on the same rank,
    ParallelPlan.ends_share_rank; positions are replicated). MoE
    models: the part replicated over dp (routed experts: moe_training.stage_split)."""
    if not model.uniform:
        return moe_training.stage_split(model, plan, stage)[0]
    return sum(sum(unit_params(model, plan, stage, c)) for c in range(plan.chunks))


def unit_params(model: ModelSpec, plan: ParallelPlan, stage: int, chunk: int) -> list[float]:
    """Parameters per layer of one chunk on one TP rank, in forward order; the embedding
    goes with the model's first layer, the untied output layer with its last. Summed over
    the chunks they are ``stage_params``."""
    if not model.uniform:
        return [u[0] for u in moe_training.unit_split(model, plan, stage, chunk)]
    pipe = pipeline_of(plan, model.layers)
    n = pipe.chunk_layers(stage, chunk)
    out = [model.params_per_layer / plan.tp] * n or [0.0]     # [0.0]: embedding/loss only
    if pipe.is_first(stage, chunk):
        out[0] += model.vocab * model.hidden / plan.tp + (model.seq_len * model.hidden if model.learned_positions else 0)
    if pipe.is_last(stage, chunk) and plan.owns_head_table(model.tied_embeddings):
        out[-1] += model.vocab * model.hidden / plan.tp
    return out


def gathers_overlap(model: ModelSpec, plan: ParallelPlan, opts: TrainingOptions) -> bool:
    """Dense models only: a MoE stage keeps its gather after the optimizer (its expert
    parameters shard over another group, workloads/moe_training.py)."""
    return opts.overlap_param_gather and plan.zero in (1, 2) and plan.grad_dp > 1 and model.uniform


def _optimizer_step(g, model, plan, opts: TrainingOptions, st: Stage, params: float,
                    syncs: list) -> int:
    """The optimizer step after ``syncs``: on the host (``offload.optimizer``: the rank's
    Adam shard, a MoE rank's experts' included), else on the GPU, after its states' reload
    under ``offload.optimizer_states``."""
    if opts.offload.optimizer:
        return optimizer_on_host(g, st.rank, adam_shard(model, plan, st.index, params),
                                 opts.grad_bytes, opts.param_bytes, adam_bytes(opts),
                                 opts.offload, syncs)
    deps = syncs
    if opts.offload.optimizer_states:
        deps = [*syncs, optimizer_states_moves(g, model, plan, opts, st, params)]
    for op in optimizer_ops(model, plan, st.index, opts, params):
        step = g.add(st.rank, "compute", op, deps, "compute", "optimizer")
        deps = (step,)
    return step


def add_grad_sync(g, model, plan, opts: TrainingOptions, st: Stage) -> None:
    """DP gradient buckets (overlapping the last backward), tied-embedding sync, optimizer,
    and the parameter all-gather of ZeRO-1/2."""
    params = stage_params(model, plan, st.index)
    dp_group = CommGroup(plan.dp_group(st.index), "dp")
    syncs = []
    if plan.grad_dp > 1 and plan.zero >= 2:
        syncs.append(st.grad_rs[-1])        # the DP channel is serial: the last one is the end
        if plan.zero >= 3 and plan.shard_group < plan.grad_dp:
            syncs.append(hsdp_replica_all_reduce(g, plan, opts, st.rank, st.index, params,
                                                 syncs[-1]))
    elif plan.grad_dp > 1:
        kind = grad_reduce_kind(plan, opts)
        last_compute = max(st.node.values())
        chunk_end = stage_backward_ends(st) if opts.grad_reduce_per_stage else {}
        for i, (n_params, dep) in enumerate(layer_buckets(model, plan, opts, st, params)):
            deps = (dep,) if opts.overlap_grad_reduce else (chunk_end.get(dep, last_compute),)
            op = Collective(kind, n_params * opts.grad_bytes, dp_group, seq=i, name=f"grad_{kind}")
            syncs.append(g.add(st.rank, "dp", op, deps, "dp", f"dp_bucket{i}"))
    ends = plan.tied_pair(model.tied_embeddings)
    if ends and st.index in ends:
        pair = CommGroup(tuple(plan.rank(0, 0, e) for e in ends), "dp")
        op = Collective("all_reduce", tied_sync_params(model, plan) * opts.grad_bytes, pair,
                        name="embedding_grad_sync")
        syncs.append(g.add(st.rank, "dp", op, (max(st.node.values()),), "dp", "embedding_sync"))
    expert_gather = None
    if not model.uniform and not plan.zero3_passes:     # ZeRO-3: workloads/fsdp.py
        syncs += moe_training.add_expert_grad_sync(g, model, plan, opts, st, bucket)
    syncs += add_copy_grad_sync(g, model, plan, opts, st, syncs)
    if not model.uniform:
        expert_gather = moe_training.expert_gather(model, plan, st.index, opts)
    step = _optimizer_step(g, model, plan, opts, st, params, syncs)
    if plan.zero in (1, 2) and plan.grad_dp > 1 and not gathers_overlap(model, plan, opts):
        gather = Collective("all_gather", params * opts.param_bytes, dp_group, seq=10**6,
                            name="param_all_gather")
        g.add(st.rank, "dp", gather, (step,), "dp", "param_all_gather")
    if expert_gather is not None:
        g.add(st.rank, "dp", expert_gather, (step,), "dp", "expert_param_all_gather")


def tied_sync_params(model: ModelSpec, plan: ParallelPlan) -> float:
    """Parameters of the tied-embedding gradient all-reduce between the end ranks (one
    TP rank's rows of the table): one table, or two under DualPipe, whose end ranks each
    hold the embedding of one direction and the output layer of the other (each
    direction's embedding and output layer summed, as Megatron-LM's embedding group
    does for a straight pipeline)."""
    tables = 2 if plan.effective_schedule == "dualpipe" else 1
    return tables * model.vocab * model.hidden / plan.tp


def copy_pair(plan: ParallelPlan, stage: int) -> CommGroup | None:
    """DualPipe: the rank and its mirror (stage p - 1 - s), which hold the two copies of
    the same two stages; None under the other schedules."""
    if plan.effective_schedule != "dualpipe" or plan.pp < 2:
        return None
    ranks = sorted((plan.rank(0, 0, stage), plan.rank(0, 0, plan.pp - 1 - stage)))
    return CommGroup(tuple(ranks), "dp")


def copy_grad_params(model: ModelSpec, plan: ParallelPlan, stage: int) -> float:
    """DualPipe: the gradients a rank sums with its mirror's, the ones its optimizer steps
    on after the data-parallel reduction (all of them under ZeRO 0, its shard under
    ZeRO-1: replicated part over dp, routed experts over expert-DP)."""
    if model.uniform:
        return plan.optimizer_shard(stage_params(model, plan, stage))
    return moe_training.optimizer_shard(plan, *moe_training.stage_split(model, plan, stage))


def add_copy_grad_sync(g, model, plan, opts: TrainingOptions, st: Stage, syncs) -> list[int]:
    """DualPipe keeps two copies of every stage (rank r holds stage r for one direction
    and stage p - 1 - r for the other), each trained on half the microbatches; before the
    optimizer the two copies' gradients are summed, so both step alike. deepseek-ai/
    DualPipe examples/example_dualpipe.py (commit 3da1bbe) checks its step against the
    unpipelined model after ``p0.grad += p1all[pp_size - 1 - rank]`` and
    ``p1.grad += p0all[pp_size - 1 - rank]``: each rank adds its mirror's gradients of
    the same stages. Modelled as one all-reduce between the rank and its mirror (same
    tp, dp, cp coordinates) on the DP channel after the data-parallel reduction, of the
    gradients the optimizer steps on (``copy_grad_params``)."""
    pair = copy_pair(plan, st.index)
    if pair is None:
        return []
    op = Collective("all_reduce", copy_grad_params(model, plan, st.index) * opts.grad_bytes,
                    pair, seq=2 * 10**6, name="copy_grad_sync")
    deps = (*syncs, max(st.node.values()))
    return [g.add(st.rank, "dp", op, deps, "dp", "copy_grad_sync")]


def stage_backward_ends(st: Stage) -> dict[int, int]:
    """``grad_reduce_per_stage``: for each layer node of a chunk's last backward, the node
    that ends that backward (the chunk's first layer, last in backward order). PyTorch's
    pipelining stage (``backward_maybe_with_nosync``, PyTorch 2.5-2.6) runs FSDP's
    ``post_backward`` of a stage after the stage's last microbatch's backward: a chunk's
    reduce-scatters start then, under the rank's other chunks' remaining backwards."""
    return {n: nodes[-1] for nodes in st.last_bwd_layers.values() if nodes for n in nodes}


def layer_buckets(model, plan, opts, st: Stage, params: float):
    """(params, ready node) per bucket: layers in the order their gradients complete."""
    per_layer = model.params_per_layer / plan.tp
    ready: list[tuple[float, int]] = []
    for c in reversed(range(plan.chunks)):
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
    return bucket(ready, opts.bucket_params)


def zero2_reduce_scatter(g, model, plan, opts: TrainingOptions, st: Stage, mb: int, c: int) -> None:
    """ZeRO-2: this microbatch's gradient buckets, reduce-scattered as its backward runs."""
    nodes = st.bwd_layers[(mb, c)]
    ready = list(zip(reversed(unit_params(model, plan, st.index, c)), nodes, strict=True))
    group = CommGroup(plan.dp_group(st.index), "dp")
    deps_all = opts.overlap_grad_reduce
    for n_params, node in bucket(ready, opts.bucket_params):
        op = Collective("reduce_scatter", n_params * opts.grad_bytes, group, seq=len(st.grad_rs),
                        name="grad_reduce_scatter")
        st.grad_rs.append(g.add(st.rank, "dp", op, (node if deps_all else nodes[-1],), "dp",
                                f"dp_rs{len(st.grad_rs)}_mb{mb}", mb=mb, chunk=c))


def bucket(ready: list[tuple[float, int]], size: float) -> list[tuple[float, int]]:
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
