"""Expert parallelism with Megatron-Core's MoE parallel folding.

Inside one pipeline stage the attention layers use ``A = tp x cp x dp`` ranks (tp fastest).
The MoE layers regroup the same A ranks as ``etp x ep x edp`` (etp fastest, then ep, then
expert-data-parallel): ``local = edp_rank * (ep * etp) + ep_rank * etp + etp_rank``
(Liu et al., "MoE Parallel Folding", arXiv 2504.14960; Megatron-Core's
``RankGenerator`` with the ``expert`` order). So ``ep`` may exceed ``dp``: tp 2, dp 32,
ep 64 on 512 GPUs puts one EP group across 8 nodes of 8 GPUs.

The expert-data-parallel size is derived: ``edp = A / (ep * etp)``. Routed-expert
gradients are reduced over the edp group, the other weights over dp as before.
"""

from __future__ import annotations

from hw_models.errors import InfeasiblePlanError
from workloads.model import ModelSpec


def attention_ranks(plan) -> int:
    """Ranks of one pipeline stage (tp x cp x dp)."""
    return plan.world // plan.pp


def edp(plan) -> int:
    return attention_ranks(plan) // (plan.ep * plan.etp)


def _local(plan, edp_rank: int, ep_rank: int, etp_rank: int) -> int:
    return (edp_rank * plan.ep + ep_rank) * plan.etp + etp_rank


def ep_group(plan, pp: int, edp_rank: int = 0, etp_rank: int = 0) -> tuple[int, ...]:
    base = pp * attention_ranks(plan)
    return tuple(base + _local(plan, edp_rank, e, etp_rank) for e in range(plan.ep))


def etp_group(plan, pp: int, edp_rank: int = 0, ep_rank: int = 0) -> tuple[int, ...]:
    base = pp * attention_ranks(plan)
    return tuple(base + _local(plan, edp_rank, ep_rank, t) for t in range(plan.etp))


def edp_group(plan, pp: int, ep_rank: int = 0, etp_rank: int = 0) -> tuple[int, ...]:
    base = pp * attention_ranks(plan)
    return tuple(base + _local(plan, d, ep_rank, etp_rank) for d in range(edp(plan)))


def validate_ep(plan, model: ModelSpec) -> None:
    """One line naming the sizes that do not fit and what would."""
    ep, etp, a = plan.ep, plan.etp, attention_ranks(plan)
    if ep < 1 or etp < 1:
        raise InfeasiblePlanError(f"ep={ep} and etp={etp} must be >= 1")
    if model.moe is None:
        if ep > 1 or etp > 1:
            raise InfeasiblePlanError(
                f"ep={ep}, etp={etp} need a mixture-of-experts model; this model is dense "
                "(give it a `moe:` block or use ep=1, etp=1)")
        return
    experts = model.moe.experts
    if experts % ep:
        divisors = [d for d in range(1, experts + 1) if experts % d == 0 and d <= a]
        raise InfeasiblePlanError(
            f"ep={ep} does not divide the model's {experts} experts; allowed ep: "
            f"{', '.join(map(str, divisors))}")
    if a % (ep * etp):
        raise InfeasiblePlanError(
            f"ep*etp = {ep}*{etp} = {ep * etp} does not divide the {a} ranks of a pipeline "
            f"stage (tp*cp*dp = {plan.world}/{plan.pp}); MoE parallel folding regroups those "
            "ranks as etp x ep x expert-dp")
    if model.moe.expert_ffn_hidden % etp:
        raise InfeasiblePlanError(
            f"etp={etp} does not divide the expert FFN size {model.moe.expert_ffn_hidden}")
    if plan.zero == 2:
        raise InfeasiblePlanError(
            "zero=2 with a mixture-of-experts model is not modelled; use zero 0, 1 "
            "(Megatron's distributed optimizer, sharded over dp and expert-dp) or 3 "
            "(Megatron FSDP: weights, gradients and optimizer states sharded)")
    if plan.zero >= 3 and plan.zero_shard_group is not None:
        raise InfeasiblePlanError(
            f"zero_shard_group={plan.zero_shard_group} (HSDP) with a mixture-of-experts model "
            "is not modelled; leave it out to shard over all of dp and expert-dp")
