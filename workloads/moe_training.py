"""The training builder's hooks for non-uniform models (MoE, MLA, windowed attention, MTP).

workloads/training.py builds a uniform model's chunks from one layer's kernels repeated;
here each chunk is built layer by layer (dense and MoE layers differ), parameters are
split into the part replicated over data parallelism and the routed experts sharded over
expert parallelism, and the experts' gradients are reduced over the expert-data-parallel
group (MoE parallel folding, workloads/moe_parallel.py) on the same DP channel.
"""

from __future__ import annotations

from dataclasses import dataclass

from workloads import moe as moe_spec
from workloads import moe_parallel
from workloads.graph import Collective, CommGroup, ExecutionGraph
from workloads.layer_attention import bf16_context
from workloads.layers import LayerContext, grad_accumulation, head_backward, head_forward
from workloads.model import ModelSpec
from workloads.moe_layers import (
    MoEContext,
    layer_backward_at,
    layer_forward_at,
    layer_recompute_at,
    make_context,
    mtp_backward,
    mtp_forward,
)
from workloads.moe_load import Load, Routing, ep_load
from workloads.parallel import ParallelPlan


@dataclass(frozen=True)
class MoEOptions:
    dispatcher: str = "alltoall"
    routing: Routing = Routing()
    overlap: bool = False
    domain_gpus: int = 8           # consecutive ranks that share one NVLink domain
    dispatch_dtype: str = "bf16"   # dispatch payload: bf16 or fp8
    fused_mlp: bool = False        # TE's fused grouped MLP (biases inside its kernels)
    router_dtype: str | None = None    # moe_router_dtype: router GEMM and probs (None: 16-bit)
    freeze_router: bool = False        # router weights frozen: no weight-gradient GEMM
    permute_fusion: bool = True        # TE's fused permute / unpermute (moe_permute_fusion)
    router_fusion: bool = False        # TE's fused router kernels (moe_router_fusion)
    aux_loss: bool = False             # load-balancing loss computed (moe_aux_loss_coeff > 0)
    hybridep_sms: int = 16             # hybridep: moe_hybridep_num_sms


def load(model: ModelSpec, plan: ParallelPlan, opts: MoEOptions | None) -> Load | None:
    if model.moe is None:
        return None
    return ep_load((opts or MoEOptions()).routing, model.moe.experts, plan.ep)


def context(model: ModelSpec, plan: ParallelPlan, opts: MoEOptions | None, stage: int) -> MoEContext | None:
    if model.moe is None:
        return None
    opts = opts or MoEOptions()
    return make_context(moe_parallel.ep_group(plan, stage), moe_parallel.etp_group(plan, stage),
                        opts.dispatcher, load(model, plan, opts).rank_factor, opts.domain_gpus,
                        opts.dispatch_dtype, opts.fused_mlp, opts.router_dtype,
                        opts.freeze_router, opts.permute_fusion, opts.router_fusion, opts.aux_loss,
                        opts.hybridep_sms)


def chunk_sizes(plan: ParallelPlan, layers: int, stage: int) -> list[int]:
    """Layers per chunk of a stage. When a stage's layers do not split evenly over vpp
    chunks, the first stage's first chunks and the other stages' last chunks hold one
    layer less: Megatron's layout when the embedding and the loss count as a layer each
    (``account_for_embedding/loss_in_pipeline_split``)."""
    n = plan.stage_layers(layers)[stage]
    base, short = -(-n // plan.vpp), -(-n // plan.vpp) * plan.vpp - n
    sizes = [base] * plan.vpp
    for k in range(short):
        sizes[k if stage == 0 else plan.vpp - 1 - k] -= 1
    return sizes


def chunk_layers(model: ModelSpec, plan: ParallelPlan, stage: int, chunk: int) -> range:
    """Global indices of the layers of one (stage, chunk): virtual stage chunk*pp + stage,
    virtual stages in order (or the plan's own virtual-stage placement where it has one)."""
    pipeline = getattr(plan, "pipeline", None)
    if pipeline is not None:
        pipe = pipeline(model.layers)
        pos, counts = pipe.position(stage, chunk), pipe.stage_layer_counts
        return range(sum(counts[:pos]), sum(counts[:pos + 1]))
    sizes = [chunk_sizes(plan, model.layers, s) for s in range(plan.pp)]
    vs = chunk * plan.pp + stage
    start = sum(sizes[v % plan.pp][v // plan.pp] for v in range(vs))
    return range(start, start + sizes[stage][chunk])


def chunk_body(ctx: LayerContext, plan: ParallelPlan, stage: int, chunk: int) -> tuple[list, list]:
    """(forward, backward) kernels of a chunk's layers, recompute included."""
    ids = chunk_layers(ctx.model, plan, stage, chunk)
    fwd = [op for i in ids for op in layer_forward_at(ctx, i)]
    bwd = [op for i in reversed(ids) for op in layer_bwd_ops(ctx, plan, i)]
    return fwd, bwd


def layer_bwd_ops(ctx: LayerContext, plan: ParallelPlan, i: int) -> list:
    """Recompute and backward of layer ``i``, then (without gradient-accumulation fusion)
    the add of its weight gradients into the main gradients of the rank's parameters, the
    routed experts' included, as a dense layer's (workloads.layers.grad_accumulation)."""
    local = layer_dense(ctx.model, plan, i) + moe_spec.expert_params(ctx.model, i) / (plan.ep * plan.etp)
    return (layer_recompute_at(ctx, i, plan.recompute) + layer_backward_at(ctx, i)
            + grad_accumulation(ctx, local))


def head_fwd(ctx: LayerContext) -> list:
    """Output head, then each MTP module with its own pass through the shared head (the
    output layer runs in 16-bit under FP8: it is outside Transformer Engine's autocast)."""
    head = head_forward(bf16_context(ctx))
    ops = head
    for _ in range(ctx.model.mtp_layers):
        ops = ops + mtp_forward(ctx) + head
    return ops


def head_bwd(ctx: LayerContext) -> list:
    head = head_backward(bf16_context(ctx))
    ops: list = []
    for _ in range(ctx.model.mtp_layers):
        ops = ops + head + mtp_backward(ctx)
    return ops + head


# ------------------------------------------------------------------------- parameters

def _ends(model: ModelSpec, plan: ParallelPlan, stage: int, chunk: int) -> tuple[bool, bool]:
    """Whether (stage, chunk) is the first / last virtual stage of the pipeline
    (workloads/pipeline.py: under DualPipe both end ranks hold both, one per direction;
    under the V shapes rank 0 holds both)."""
    pipe = plan.pipeline(model.layers)
    return pipe.is_first(stage, chunk), pipe.is_last(stage, chunk)


def holds_last(model: ModelSpec, plan: ParallelPlan, stage: int) -> bool:
    """Whether a rank of ``stage`` holds the pipeline's last virtual stage (the output
    layer and the MTP modules)."""
    return any(_ends(model, plan, stage, c)[1] for c in range(plan.chunks))


def unit_split(model: ModelSpec, plan: ParallelPlan, stage: int, chunk: int) -> list[tuple[float, float]]:
    """(replicated, expert) parameters per layer of a chunk on one rank, forward order:
    attention, norms, router, shared experts and dense MLPs split over tp; routed experts
    over ep x etp. The embedding goes with the model's first layer, the untied output
    layer and the MTP modules with its last."""
    out = [(layer_dense(model, plan, i), moe_spec.expert_params(model, i) / (plan.ep * plan.etp))
           for i in chunk_layers(model, plan, stage, chunk)] or [(0.0, 0.0)]   # embedding/loss only
    embed, untied = moe_spec.embedding_params(model)
    first, last = _ends(model, plan, stage, chunk)
    if first:
        out[0] = (out[0][0] + embed / plan.tp, out[0][1])
    if last:
        mtp_experts = moe_spec.mtp_expert_params(model)
        own = plan.owns_head_table(tied=True)   # the tied table's copy
        head = (untied or (model.vocab * model.hidden if own else 0)) / plan.tp
        mtp_lat = moe_spec.mtp_modules(model) * sum(_duplicated(model, i) for i in moe_spec.mtp_layer_ids(model))
        mtp = (moe_spec.mtp_params(model) - mtp_experts - mtp_lat) / plan.tp + mtp_lat
        out[-1] = (out[-1][0] + head + mtp, out[-1][1] + mtp_experts / (plan.ep * plan.etp))
    return out


def _duplicated(model: ModelSpec, i: int) -> int:
    """Weights of layer ``i`` every TP rank holds whole: LatentMoE's latent projections
    (Megatron-Core TELinear ``parallel_mode="duplicated"``)."""
    return moe_spec.latent_proj_params(model) if moe_spec.is_moe_layer(model, i) else 0


def layer_dense(model: ModelSpec, plan: ParallelPlan, i: int) -> float:
    """Replicated parameters of layer ``i`` on one rank (split over tp, but for the
    duplicated latent projections)."""
    dup = _duplicated(model, i)
    return (moe_spec.layer_params(model, i) - moe_spec.expert_params(model, i) - dup) / plan.tp + dup


def stage_split(model: ModelSpec, plan: ParallelPlan, stage: int) -> tuple[float, float]:
    """(replicated, expert) parameters of one rank of a pipeline stage: every chunk it
    holds (``plan.chunks``: vpp when interleaved, 2 under zb-v, DualPipe and DualPipeV)."""
    units = [u for c in range(plan.chunks) for u in unit_split(model, plan, stage, c)]
    return sum(u[0] for u in units), sum(u[1] for u in units)


# ------------------------------------------------------------------------- gradients

def add_expert_grad_sync(g: ExecutionGraph, model: ModelSpec, plan: ParallelPlan, opts, st,
                         bucket) -> list[int]:
    """Routed-expert gradient buckets over the expert-data-parallel group, issued as the
    last backward's layers finish (after the replicated buckets on the same channel)."""
    size = moe_parallel.edp(plan)
    if model.moe is None or size <= 1:
        return []
    group = CommGroup(moe_parallel.edp_group(plan, st.index), "dp")
    ready = []
    for c, grads in expert_grads(model, plan, st.index):
        nodes = st.last_bwd_layers.get(c, [])
        ready += [(e, n) for e, n in zip(grads, nodes, strict=False) if e > 0]
    kind = "reduce_scatter" if plan.zero >= 1 and opts.optimizer != "muon" else "all_reduce"
    out = []
    for i, (n_params, dep) in enumerate(bucket(ready, opts.bucket_params)):
        op = Collective(kind, n_params * opts.grad_bytes, group, seq=1000 + i, name=f"expert_grad_{kind}")
        out.append(g.add(st.rank, "dp", op, (dep,), "dp", f"edp_bucket{i}"))
    return out


def expert_grads(model: ModelSpec, plan: ParallelPlan, stage: int) -> list[tuple[int, list[float]]]:
    """(chunk, routed-expert parameters of each of its layers on one rank) in the order
    the last backward completes them: chunks and layers from the last."""
    return [(c, [u[1] for u in reversed(unit_split(model, plan, stage, c))])
            for c in reversed(range(plan.chunks))]


def optimizer_shard(plan: ParallelPlan, dense: float, experts: float) -> float:
    """Parameters a rank's optimizer steps on, of its ``dense`` (replicated over dp) and
    routed-``experts`` ones (over expert-DP): all of them under ZeRO 0, each part's shard
    of its group under ZeRO-1."""
    edp = moe_parallel.edp(plan)
    return dense / (plan.dp if plan.zero >= 1 else 1) + experts / (edp if plan.zero >= 1 else 1)


def expert_gather(model: ModelSpec, plan: ParallelPlan, stage: int, opts) -> Collective | None:
    """The experts' parameter all-gather over edp after the ZeRO-1 step (Adam's shards or
    Muon's layer-wise owners)."""
    experts = stage_split(model, plan, stage)[1]
    if plan.zero == 1 and moe_parallel.edp(plan) > 1 and experts > 0:
        return Collective("all_gather", experts * opts.param_bytes,
                          CommGroup(moe_parallel.edp_group(plan, stage), "dp"), seq=10**6 + 1,
                          name="expert_param_all_gather")
    return None
