"""``plans: auto``: every (tp, pp, dp, vpp, micro_batch, recompute, sequence_parallel,
zero, and for MoE models ep and etp) candidate for a model on a GPU count.

The grid is built from the GPU count (tp and pp among its divisors, dp the quotient);
every candidate is then checked by workloads.parallel.validate in the evaluation
stage, so indivisible ones are kept as rows with their reason instead of vanishing.
Only meaningless duplicates are never generated: vpp > 1 without pipelining, and
sequence parallelism without tensor parallelism (both are no-ops there).

ZeRO-3 with pipeline parallelism is rejected (``unsupported``): DeepSpeed's pipeline
engine asserts ``zero_optimization_stage() < ZeroStageEnum.gradients`` ("ZeRO-2 and
ZeRO-3 are incompatible with pipeline parallelism") and Megatron-LM's distributed
optimizer shards optimizer states only. The graph can still simulate it (gathers per
microbatch, see workloads.training) when a scenario asks for it directly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

from hw_models.errors import InfeasiblePlanError
from sim.sweep.spec import PlanSpace
from workloads.model import ModelSpec
from workloads.parallel import ParallelPlan

UNSUPPORTED_ZERO3_PP = "zero=3 with pp={pp}: ZeRO-3 is not run with pipeline parallelism " \
    "(DeepSpeed asserts ZeRO-2/3 are incompatible with it; Megatron-LM shards optimizer " \
    "states only); use pp=1 or zero<=2"


def check_supported(plan: ParallelPlan) -> None:
    """Plans the frameworks refuse, although divisible (see the module docstring)."""
    if plan.zero >= 3 and plan.pp > 1:
        raise InfeasiblePlanError(UNSUPPORTED_ZERO3_PP.format(pp=plan.pp))


UNESTIMATED_OFFLOAD = "workload.offload.{what}: sweeps estimate it under zero=3 only; " \
    "simulate the plan (clustersim simulate)"


def check_offload(offload, plan: ParallelPlan) -> None:
    """Host offloads ``simulate`` runs but the sweep estimator does not outside ZeRO-3
    (whose step it plays from the graph builder's nodes, sim/sweep/zero3_play.py):
    fine-grained activation offload of a model whose layers differ (a dense model's is a
    fraction of every layer, which the estimator plays) and the optimizer states parked
    between steps."""
    if plan.zero3_passes:
        return
    if offload.modules:
        raise InfeasiblePlanError(UNESTIMATED_OFFLOAD.format(what="modules on a MoE, MLA or "
                                                             "windowed-attention model"))
    if offload.optimizer_states:
        raise InfeasiblePlanError(UNESTIMATED_OFFLOAD.format(what="optimizer_states"))


def divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def uneven_split(layers: int, pp: int, vpp: int) -> list[int] | None:
    """Layers per stage, each a multiple of vpp, the first stages one unit larger."""
    if layers % vpp:
        return None
    units = layers // vpp
    q, r = divmod(units, pp)
    if q == 0:
        return None
    return [(q + (1 if s < r else 0)) * vpp for s in range(pp)]


def _grid(space: PlanSpace, model: ModelSpec, world: int,
          global_batch: int) -> Iterator[tuple[int, int, int, int]]:
    """(tp, pp, dp, global batch) of every tp/pp pair the space allows on ``world`` GPUs."""
    tps = space.tp or [d for d in divisors(world) if d <= model.heads]
    for tp in tps:
        if world % tp:
            continue
        pps = space.pp or [d for d in divisors(world // tp) if d <= model.layers]
        for pp in pps:
            if (world // tp) % pp:
                continue
            dp = world // (tp * pp)
            gb = global_batch if space.batch == "exact" else (global_batch // dp) * dp
            yield tp, pp, dp, max(gb, 0)


def _inner_axes(space: PlanSpace, model: ModelSpec, tp: int, pp: int, dp: int,
                gb: int) -> list[list]:
    """vpp, micro_batch, recompute, (sequence_parallel, tp_comm_overlap), zero, (ep, etp)
    and (offload_activations, offload_optimizer) values for one (tp, pp, dp)."""
    vpps = [v for v in space.vpp if v == 1 or pp > 1]
    sps = [s for s in space.sequence_parallel if not s or tp > 1] or [False]
    # "divisors": every micro-batch that divides the local batch (Calculon's
    # get_valid_microbatch_sizes), else the listed values.
    mbs = (divisors(max(gb // dp, 1)) if space.micro_batch == "divisors" else space.micro_batch)
    # sequence parallelism paired with TP overlap (which pipelines the SP collectives only,
    # so it is tried with sequence parallelism and tp > 1), and the host offloads
    sp_tpo = [(sp, tpo) for sp in sps for tpo in space.tp_comm_overlap
              if tpo == "none" or (sp and tp > 1)]
    offloads = list(itertools.product(space.offload_activations, space.offload_optimizer))
    return [vpps, mbs, space.recompute, sp_tpo, space.zero, _expert_sizes(space, model, tp * dp),
            offloads]


def count(space: PlanSpace, model: ModelSpec, world: int, global_batch: int) -> int:
    """len(list(candidates(...))), without building them."""
    return sum(math.prod(len(a) for a in _inner_axes(space, model, tp, pp, dp, gb))
               for tp, pp, dp, gb in _grid(space, model, world, global_batch))


def candidates(space: PlanSpace, model: ModelSpec, world: int,
               global_batch: int) -> Iterator[dict[str, Any]]:
    for tp, pp, dp, gb in _grid(space, model, world, global_batch):
        axes = _inner_axes(space, model, tp, pp, dp, gb)
        for vpp, mb, rc, (sp, tpo), zero, (ep, etp), (off_a, off_o) in itertools.product(*axes):
            layers = None
            if space.uneven_layers and pp > 1 and model.layers % (pp * vpp):
                layers = uneven_split(model.layers, pp, vpp)
            plan = {"tp": tp, "pp": pp, "dp": dp, "vpp": vpp, "micro_batch": mb,
                    "recompute": rc, "sequence_parallel": sp, "zero": zero,
                    "global_batch": gb, "pipeline_layers": layers,
                    **_extra_keys(tpo, off_a, off_o)}
            yield plan | ({"ep": ep, "etp": etp} if model.is_moe else {})


def _extra_keys(tpo: str, off_a: float, off_o: bool) -> dict[str, Any]:
    """Keys of the Calculon-style dimensions, left out at their defaults (older rows)."""
    out: dict[str, Any] = {}
    if tpo != "none":
        out["tp_comm_overlap"] = tpo
    if off_a:
        out["offload_activations"] = off_a
    if off_o:
        out["offload_optimizer"] = off_o
    return out


def _expert_sizes(space: PlanSpace, model: ModelSpec, stage_ranks: int) -> list[tuple[int, int]]:
    """(ep, etp) candidates of a MoE model: by default every ep that divides both the
    experts and the stage's tp*dp ranks (MoE parallel folding); sizes that do not fit are
    still listed when given explicitly, so the sweep reports why they fail."""
    if not model.is_moe:
        return [(1, 1)]
    eps = space.ep or [d for d in divisors(model.moe.experts) if stage_ranks % d == 0]
    return list(itertools.product(eps, space.etp))
