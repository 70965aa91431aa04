"""Parallelism plans: validation against model and cluster, and rank placement.

Rank order follows Megatron-LM's default (tp fastest, then dp, then pp):
``rank = pp_rank * (dp * tp) + dp_rank * tp + tp_rank``, so a TP group sits inside one
node and DP/PP groups span nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hw_models.errors import InfeasiblePlanError
from workloads.model import ModelSpec

Schedule = Literal["gpipe", "1f1b", "interleaved"]
Recompute = Literal["none", "selective", "full"]


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
    recompute: Recompute = "none"
    pipeline_layers: tuple[int, ...] | None = None   # explicit layers per stage (uneven PP)
    ep: int = 1                     # expert parallel size (MoE layers; workloads/moe_parallel.py)
    etp: int = 1                    # expert tensor parallel size

    @property
    def world(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def microbatches(self) -> int:
        """Microbatches per pipeline per iteration (gradient-accumulation steps)."""
        return self.global_batch // (self.dp * self.micro_batch)

    @property
    def sp(self) -> bool:
        return self.sequence_parallel and self.tp > 1

    @property
    def effective_schedule(self) -> Schedule:
        return "interleaved" if self.vpp > 1 else self.schedule

    def rank(self, tp: int, dp: int, pp: int) -> int:
        return pp * (self.dp * self.tp) + dp * self.tp + tp

    def tp_group(self, pp: int, dp: int = 0) -> tuple[int, ...]:
        return tuple(self.rank(t, dp, pp) for t in range(self.tp))

    def dp_group(self, pp: int, tp: int = 0) -> tuple[int, ...]:
        return tuple(self.rank(tp, d, pp) for d in range(self.dp))

    def stage_layers(self, layers: int) -> tuple[int, ...]:
        return self.pipeline_layers or (layers // self.pp,) * self.pp


def derive_dp(world: int, tp: int, pp: int) -> int:
    if world % (tp * pp):
        raise InfeasiblePlanError(
            f"tp*pp = {tp}*{pp} = {tp * pp} does not divide the {world} GPUs; "
            f"choose tp*pp among the divisors of {world}")
    return world // (tp * pp)


def validate(plan: ParallelPlan, model: ModelSpec, world: int) -> None:
    """Reject a plan that cannot run, naming the sizes and what would be allowed."""
    def no(msg: str) -> None:
        raise InfeasiblePlanError(msg)

    if plan.world != world:
        no(f"tp*pp*dp = {plan.tp}*{plan.pp}*{plan.dp} = {plan.world} but the cluster has {world} GPUs")
    if model.heads % plan.tp:
        no(f"tp={plan.tp} does not divide the model's {model.heads} attention heads")
    if model.kv_heads_ % plan.tp and plan.tp % model.kv_heads_:
        no(f"tp={plan.tp} and the model's {model.kv_heads_} kv heads do not divide one another")
    if plan.sp and model.seq_len % plan.tp:
        no(f"sequence parallel needs tp={plan.tp} to divide seq_len={model.seq_len}")
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


def _validate_layers(plan: ParallelPlan, model: ModelSpec) -> None:
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
