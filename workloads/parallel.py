"""Parallelism plans: validation against model and cluster, and rank placement.

Rank order follows Megatron-LM's default ``tp-cp-ep-dp-pp`` (tp fastest, then cp, then
dp, then pp): ``rank = ((pp_rank * dp + dp_rank) * cp + cp_rank) * tp + tp_rank``, so a TP
group sits inside one node, a CP group next to it, and DP/PP groups span nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hw_models.errors import InfeasiblePlanError
from workloads.model import ModelSpec

Schedule = Literal["gpipe", "1f1b", "interleaved", "zb-h1", "zb-v", "dualpipe", "dualpipev"]
CPKind = Literal["ring", "allgather", "ulysses", "hybrid"]
TPOverlap = Literal["none", "ring", "async"]
Recompute = Literal["none", "selective", "selective_op", "norm_moe_act", "mla_up_proj", "mlp",
                    "mla_up_proj_mlp", "full"]
# Megatron-Core recompute_modules (granularity selective) behind the module-set modes.
RECOMPUTE_MODULES = {"norm_moe_act": ("layernorm", "moe_act"), "mla_up_proj": ("mla_up_proj",),
                     "mlp": ("mlp",), "mla_up_proj_mlp": ("mla_up_proj", "mlp")}
# Megatron-Core TransformerConfig.recompute_modules names the simulator prices (a plan's
# ``recompute`` may be a tuple of them: workload.recompute_modules).
RecomputeModule = Literal["core_attn", "moe_act", "layernorm", "mla_up_proj", "mlp", "moe",
                          "shared_experts"]
RECOMPUTE_MODULE_NAMES = ("core_attn", "moe_act", "layernorm", "mla_up_proj", "mlp", "moe",
                          "shared_experts")


def recompute_modules(mode: str | tuple[str, ...]) -> frozenset[str]:
    """The Megatron-Core recompute_modules behind a plan's ``recompute``: a tuple of module
    names as given, a module-set mode's modules (RECOMPUTE_MODULES), else none (``none``,
    ``selective``, ``selective_op`` and ``full`` are priced as modes of their own)."""
    if isinstance(mode, tuple):
        return frozenset(mode)
    return frozenset(RECOMPUTE_MODULES.get(mode, ()))


def plan_recompute(mode: str, modules: list[str] | None) -> str | tuple[str, ...]:
    """A plan's ``recompute`` from a workload's mode and its recompute_modules list (the
    list wins; an empty list is no recompute, as in Megatron-Core)."""
    if modules is None:
        return mode
    return tuple(modules) if modules else "none"


def recompute_label(mode: str | tuple[str, ...]) -> str:
    """A plan's recompute as one string for tables: the mode, or ``[moe, layernorm]``."""
    return f"[{', '.join(mode)}]" if isinstance(mode, tuple) else mode


@dataclass(frozen=True)
class ParallelPlan:
    tp: int
    pp: int
    dp: int
    micro_batch: int
    global_batch: int
    vpp: int = 1
    sequence_parallel: bool = False
    schedule: Schedule = "1f1b"
    zero: int = 0
    recompute: Recompute | tuple[str, ...] = "none"   # a mode, or Megatron-Core module names
    pipeline_layers: tuple[int, ...] | None = None   # per rank, or per virtual stage (pp x chunks)
    # -- long context, schedules, overlap (docs/long_context.md, docs/schedules.md) --
    cp: int = 1                       # context parallel size
    cp_kind: CPKind = "ring"
    ulysses_size: int | None = None   # hybrid CP: Ulysses group (default: CP ranks in a node)
    cp_compiled: bool = False         # allgather CP traced by torch.compile (workloads/cp.py)
    embedding_in_split: bool = False  # Megatron account_for_embedding_in_pipeline_split
    loss_in_split: bool = False       # Megatron account_for_loss_in_pipeline_split
    tp_comm_overlap: TPOverlap = "none"
    reshard_after_forward: bool = True   # FSDP2 / ZeRO-3: free gathered weights after forward
    prefetch: int = 1                    # FSDP2 / ZeRO-3: layers gathered ahead
    zero_shard_group: int | None = None  # HSDP: shard within groups of this many DP ranks
    ep: int = 1                     # expert parallel size (MoE layers; workloads/moe_parallel.py)
    etp: int = 1                    # expert tensor parallel size

    @property
    def world(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    @property
    def microbatches(self) -> int:
        """Microbatches per pipeline per iteration (gradient-accumulation steps)."""
        return self.global_batch // (self.dp * self.micro_batch)

    @property
    def sp(self) -> bool:
        return self.sequence_parallel and self.tp > 1

    @property
    def effective_schedule(self) -> Schedule:
        if self.schedule in ("gpipe", "1f1b", "interleaved"):
            return "interleaved" if self.vpp > 1 else self.schedule
        return self.schedule

    @property
    def chunks(self) -> int:
        """Model chunks per pipeline rank."""
        return 2 if self.schedule in ("zb-v", "dualpipe", "dualpipev") else self.vpp

    @property
    def ulysses(self) -> int:
        """Ulysses (all-to-all) part of the CP group: all of it for ``ulysses``, the given
        ``ulysses_size`` for ``hybrid`` (else 1: ring / all-gather only)."""
        if self.cp_kind == "ulysses":
            return self.cp
        if self.cp_kind == "hybrid":
            return self.ulysses_size or 1
        return 1

    @property
    def grad_dp(self) -> int:
        """Ranks that hold the same weights and reduce gradients together: DP x CP."""
        return self.dp * self.cp

    @property
    def zero3_passes(self) -> bool:
        """Whether the step gathers and reduce-scatters layer by layer (ZeRO-3 / FSDP over
        more than one DP x CP rank: workloads/fsdp.py); with one rank there is nothing to
        shard."""
        return self.zero >= 3 and self.grad_dp > 1

    @property
    def shard_group(self) -> int:
        """DP ranks a ZeRO shard spans (HSDP: zero_shard_group, else all of dp)."""
        return self.zero_shard_group or self.grad_dp

    def optimizer_shard(self, params: float) -> float:
        """The part of a rank's ``params`` (replicated over the gradient-reduction group) its
        optimizer steps on: all of them under ZeRO 0, 1 / ``shard_group`` of them under
        ZeRO-1 and above."""
        return params / (self.shard_group if self.zero >= 1 else 1)

    def rank(self, tp: int, dp: int, pp: int, cp: int = 0) -> int:
        return ((pp * self.dp + dp) * self.cp + cp) * self.tp + tp

    def tp_group(self, pp: int, dp: int = 0) -> tuple[int, ...]:
        return tuple(self.rank(t, dp, pp) for t in range(self.tp))

    def dp_group(self, pp: int, tp: int = 0) -> tuple[int, ...]:
        """The gradient-reduction group: DP x CP (Megatron's data-parallel group with
        context parallelism); the DP group itself when cp = 1."""
        return tuple(self.rank(tp, d, pp, c) for d in range(self.dp) for c in range(self.cp))

    def cp_group(self, pp: int, dp: int = 0, tp: int = 0) -> tuple[int, ...]:
        return tuple(self.rank(tp, dp, pp, c) for c in range(self.cp))

    @property
    def ends_share_rank(self) -> bool:
        """Whether one pipeline rank holds both the first and the last virtual stage: no
        pipeline, or rank 0 of a V (zb-v, DualPipeV; workloads/pipeline.py). With tied
        embeddings that rank's output layer uses the word-embedding table it holds: one
        table, no tied-embedding gradient sync."""
        return self.pp == 1 or self.schedule in ("zb-v", "dualpipev")

    def owns_head_table(self, tied: bool) -> bool:
        """Whether the last stage's output layer holds a table of its own: untied, or tied
        on a pipeline whose ends are on different ranks (``ends_share_rank``)."""
        return not tied or not self.ends_share_rank

    def tied_pair(self, tied: bool) -> tuple[int, int] | None:
        """Pipeline stages whose copies of a tied word-embedding table all-reduce their
        gradients each step (Megatron-LM's embedding group: the first and the last
        stage), or None where one rank holds the only table."""
        return None if not tied or self.ends_share_rank else (0, self.pp - 1)

    def pipeline(self, layers: int):
        from workloads.pipeline import Pipeline
        return Pipeline(self.effective_schedule, self.pp, self.chunks, self.microbatches, layers,
                        self.pipeline_layers, self.embedding_in_split, self.loss_in_split)

    def stage_layers(self, layers: int) -> tuple[int, ...]:
        """Transformer layers per pipeline rank (all its chunks)."""
        if self.chunks == 1 and not (self.embedding_in_split or self.loss_in_split):
            return self.pipeline_layers or (layers // self.pp,) * self.pp
        pipe = self.pipeline(layers)
        return tuple(pipe.rank_layers(r) for r in range(self.pp))


def derive_dp(world: int, tp: int, pp: int, cp: int = 1) -> int:
    if world % (tp * pp * cp):
        what = "tp*pp" + ("*cp" if cp > 1 else "")
        sizes = f"{tp}*{pp}" + (f"*{cp}" if cp > 1 else "")
        raise InfeasiblePlanError(
            f"{what} = {sizes} = {tp * pp * cp} does not divide the {world} GPUs; "
            f"choose {what} among the divisors of {world}")
    return world // (tp * pp * cp)


def validate(plan: ParallelPlan, model: ModelSpec, world: int) -> None:
    """Reject a plan that cannot run, naming the sizes and what would be allowed."""
    def no(msg: str) -> None:
        raise InfeasiblePlanError(msg)

    if plan.world != world:
        no(f"tp*pp*dp*cp = {plan.tp}*{plan.pp}*{plan.dp}*{plan.cp} = {plan.world} but the "
           f"cluster has {world} GPUs")
    if model.heads % plan.tp:
        no(f"tp={plan.tp} does not divide the model's {model.heads} attention heads")
    if model.kv_heads_ % plan.tp and plan.tp % model.kv_heads_:
        no(f"tp={plan.tp} and the model's {model.kv_heads_} kv heads do not divide one another")
    _validate_mamba(plan, model)
    _validate_dsv4(plan, model)
    if "mla_up_proj" in recompute_modules(plan.recompute) and \
            getattr(model.attention, "kind", None) not in ("mla", "dsv4"):
        no(f"recompute {plan.recompute} re-runs MLA's up projections: the model has no MLA or "
           "DeepSeek-V4 attention (Megatron-Core TransformerConfig rejects mla_up_proj without "
           "multi_latent_attention)")
    if plan.sp and model.seq_len % (plan.tp * plan.cp):
        no(f"sequence parallel needs tp*cp={plan.tp * plan.cp} to divide seq_len={model.seq_len}")
    from workloads.cp import validate_cp
    validate_cp(plan, model)
    _validate_schedule(plan)
    _validate_layers(plan, model)
    if plan.global_batch % (plan.dp * plan.micro_batch):
        no(f"global_batch={plan.global_batch} is not a multiple of dp*micro_batch = "
           f"{plan.dp}*{plan.micro_batch} = {plan.dp * plan.micro_batch}")
    if plan.vpp > 1:
        if plan.pp == 1:
            no("vpp > 1 (interleaved schedule) needs pp > 1")
        if plan.microbatches % plan.pp:
            no(f"the interleaved schedule needs the {plan.microbatches} microbatches per "
               f"pipeline to be a multiple of pp={plan.pp}")
    if plan.zero not in (0, 1, 2, 3):
        no(f"zero={plan.zero}; allowed: 0, 1, 2, 3")
    from workloads.moe_parallel import validate_ep
    validate_ep(plan, model)


def _validate_dsv4(plan: ParallelPlan, model: ModelSpec) -> None:
    """DeepSeek-V4 attention (workloads/layer_dsv4.py): the grouped output projection is
    split by groups over TP; context parallelism is refused (not priced)."""
    att = model.attention
    if att is None or att.kind != "dsv4":
        return
    if att.o_groups % plan.tp:
        raise InfeasiblePlanError(
            f"tp={plan.tp} must divide the model's {att.o_groups} output groups (o_groups: "
            f"the grouped output projection is split by groups over TP)")
    if plan.cp > 1:
        raise InfeasiblePlanError(
            f"cp={plan.cp} with DeepSeek-V4 attention is not modelled (its compressed "
            f"entries and indexer span the sequence); use cp=1")


def _validate_mamba(plan: ParallelPlan, model: ModelSpec) -> None:
    """Mamba layers (hybrid models): Megatron-Core's MambaMixer splits heads and groups
    over TP; context parallelism is refused (not priced)."""
    s = model.mamba
    if s is None:
        return
    if s.heads % plan.tp or s.groups % plan.tp:
        raise InfeasiblePlanError(
            f"tp={plan.tp} must divide the model's {s.heads} Mamba heads and {s.groups} Mamba "
            f"groups (Megatron-Core MambaMixer splits both over TP)")
    if plan.cp > 1:
        raise InfeasiblePlanError(
            f"cp={plan.cp} with Mamba layers is not modelled: Megatron-Core runs them with "
            f"all-to-alls between sequence and head shards (MambaContextParallel), which "
            f"clustersim does not price yet; use cp=1")


def _validate_schedule(plan: ParallelPlan) -> None:
    """Sizes the split-backward schedules need (workloads/schedules_zb.py)."""
    kind, m, p = plan.schedule, plan.microbatches, plan.pp
    if kind in ("zb-v", "dualpipe", "dualpipev") and plan.vpp not in (1, 2):
        raise InfeasiblePlanError(f"schedule {kind} places 2 chunks per rank; vpp={plan.vpp} "
                                  "is not allowed with it (leave vpp at 1)")
    if kind in ("gpipe", "zb-h1") and plan.vpp > 1:
        raise InfeasiblePlanError(f"schedule {kind} runs one chunk per rank; vpp={plan.vpp} "
                                  "is not allowed with it (interleaved or zb-v run chunks)")
    if kind in ("dualpipe", "dualpipev") and (m < 2 * p or m % 2):
        raise InfeasiblePlanError(f"schedule {kind} needs an even number of microbatches, at "
                                  f"least 2*pp = {2 * p}; got {m}")
    if kind == "dualpipe" and p % 2:
        raise InfeasiblePlanError(f"schedule dualpipe needs an even pp; got pp={p}")
    if kind not in ("gpipe", "1f1b", "interleaved") and plan.zero >= 2:
        raise InfeasiblePlanError(f"schedule {kind} defers weight gradients; it runs with zero "
                                  f"0 or 1 (the distributed optimizer), not zero={plan.zero}")
    if plan.zero_shard_group is not None and (plan.zero < 3 or plan.grad_dp % plan.zero_shard_group):
        raise InfeasiblePlanError(
            f"zero_shard_group={plan.zero_shard_group} (HSDP) needs zero=3 and must divide "
            f"dp*cp={plan.grad_dp}")
    if plan.prefetch < 1:
        raise InfeasiblePlanError(f"prefetch={plan.prefetch}; allowed: 1 or more layers")


def _validate_layers(plan: ParallelPlan, model: ModelSpec) -> None:
    if plan.pipeline_layers is not None and (plan.embedding_in_split or plan.loss_in_split):
        raise InfeasiblePlanError(
            "account_for_embedding/loss_in_pipeline_split shape the even split; with "
            "pipeline_layers the layers are given: set one or the other")
    per_stage = plan.pipeline_layers is not None and len(plan.pipeline_layers) != plan.pp
    if plan.schedule in ("zb-v", "dualpipe", "dualpipev") or plan.embedding_in_split \
            or plan.loss_in_split or per_stage:
        _validate_virtual_layers(plan, model)
        return
    if plan.pipeline_layers is not None:
        if len(plan.pipeline_layers) != plan.pp or sum(plan.pipeline_layers) != model.layers:
            raise InfeasiblePlanError(
                f"pipeline_layers {list(plan.pipeline_layers)} must have pp={plan.pp} entries "
                f"summing to the model's {model.layers} layers")
        if any(n <= 0 or (n % plan.vpp and model.uniform) or n < plan.vpp
               for n in plan.pipeline_layers):   # MoE/MLA models: uneven chunks allowed
            raise InfeasiblePlanError(
                f"every entry of pipeline_layers must be a positive multiple of vpp={plan.vpp}")
    elif model.layers % (plan.pp * plan.vpp):
        raise InfeasiblePlanError(
            f"pp*vpp = {plan.pp}*{plan.vpp} does not divide the model's {model.layers} layers "
            "(give parallel.pipeline_layers for an uneven split)")


def _validate_virtual_layers(plan: ParallelPlan, model: ModelSpec) -> None:
    """pipeline_layers with one entry per rank (each a multiple of the chunks per rank) or
    one per virtual stage; or an even split (embedding / loss counted if asked)."""
    pipe = plan.pipeline(model.layers)
    given = plan.pipeline_layers
    if given is not None:
        ok = (len(given) == pipe.stages or len(given) == plan.pp) and sum(given) == model.layers
        if not ok or any(n <= 0 for n in given):
            raise InfeasiblePlanError(
                f"pipeline_layers {list(given)} must have pp={plan.pp} (per rank) or "
                f"{pipe.stages} (per virtual stage) positive entries summing to the model's "
                f"{model.layers} layers")
        if len(given) == plan.pp != pipe.stages and model.uniform \
                and any(n % plan.chunks for n in given):     # MoE/MLA: uneven chunks allowed
            raise InfeasiblePlanError(
                f"every per-rank entry of pipeline_layers must be a multiple of the "
                f"{plan.chunks} chunks per rank (or give {pipe.stages} per-stage entries)")
        return
    counts = pipe.stage_layer_counts        # raises when the even split does not divide
    # A first/last virtual stage may hold only the embedding / the loss (Megatron allows
    # it: 126 layers + 2 on 128 stages), not with ZeRO-3's per-layer gathers.
    inner = counts[1:-1] if len(counts) > 2 else ()
    if min(counts) < 0 or (inner and min(inner) <= 0) or (min(counts) == 0 and plan.zero >= 3):
        raise InfeasiblePlanError(f"{model.layers} layers are too few for {pipe.stages} stages")
