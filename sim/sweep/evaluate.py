"""Stage 1 (closed form) and stage 2 (DES) evaluation of sweep configurations.

A configuration is ``(id, axis_overrides, plan)``: the axis values applied to the base
scenario, and, under ``plans: auto``, the plan fields. Both functions are pure (same
input, same rows), so any executor, any chunking and any resume give identical rows.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import lru_cache
from typing import Any

from hw_models.errors import ClusterSimError, InfeasiblePlanError
from sim import scenario as scenario_mod
from sim.rl_sweep import evaluate_rl, is_rl
from sim.setup import (
    host_launch,
    layout_comm_sms,
    moe_options,
    paced_compute,
    resolve_cluster,
    training_options,
)
from sim.simulate import simulate
from sim.sweep import plans
from sim.sweep.estimate import Estimator
from sim.training_config import plan_kwargs
from workloads import parallel
from workloads.model import model_flops, resolve

Config = tuple[int, dict[str, Any], dict[str, Any] | None]

PLAN_KEYS = {"tp": "workload.parallel.tp", "pp": "workload.parallel.pp",
             "dp": "workload.parallel.dp", "vpp": "workload.parallel.vpp",
             "sequence_parallel": "workload.parallel.sequence_parallel",
             "zero": "workload.parallel.zero", "pipeline_layers": "workload.parallel.pipeline_layers",
             "micro_batch": "workload.micro_batch", "recompute": "workload.recompute",
             "global_batch": "workload.global_batch",
             "tp_comm_overlap": "workload.parallel.tp_comm_overlap",
             "offload_activations": "workload.offload.activations",
             "offload_optimizer": "workload.offload.optimizer",
             "ep": "workload.parallel.ep", "etp": "workload.parallel.etp"}
OFFLOAD_KEYS = ("offload_activations", "offload_optimizer")

# Words of workloads.parallel.validate's messages -> the short reason counted in summaries.
_REASONS = (("ZeRO-3 is not run with pipeline", "unsupported: zero-3 with pp"),
            ("attention heads", "indivisible: heads"), ("kv heads", "indivisible: kv heads"),
            ("sequence parallel", "indivisible: seq_len"), ("layers", "indivisible: layers"),
            ("global_batch", "indivisible: batch"), ("global batch", "indivisible: batch"), ("interleaved", "indivisible: microbatches"),
            ("GPUs", "indivisible: gpus"), ("experts", "indivisible: experts"),
            ("ep*etp", "indivisible: ep"), ("expert FFN", "indivisible: etp"),
            ("mixture-of-experts", "unsupported: moe"))


def reason_of(message: str) -> str:
    return next((r for word, r in _REASONS if word in message), "infeasible")


def scenario_for(base: dict[str, Any], axis: dict[str, Any], plan: dict[str, Any] | None) -> dict:
    from sim.sweep.spec import deep_copy, set_dotted
    data = deep_copy(base)
    for k, v in axis.items():
        set_dotted(data, k, v)
    for k, v in (plan or {}).items():
        if v is not None:
            set_dotted(data, PLAN_KEYS[k], v)
    if plan:
        par = data.setdefault("workload", {}).setdefault("parallel", {})
        base_sched = par.get("schedule", "1f1b")
        par["schedule"] = "interleaved" if plan.get("vpp", 1) > 1 else (
            "1f1b" if base_sched == "interleaved" else base_sched)
    return data


class _Context:
    """What one axis point shares: the scenario, its cluster and model, an estimator."""

    def __init__(self, data: dict[str, Any]):
        self.scenario = sc = scenario_mod.parse(data, "sweep point")
        cl = resolve_cluster(sc)
        system, w = cl.system, sc.workload
        compute = paced_compute(cl.gpu, cl.profile, sc.sim.speed_scale,
                                   cl.layout.world_size)
        model = resolve(w.model).with_seq_len(w.seq_len)
        opts = replace(training_options(w, cl.gpu), moe=moe_options(w, model, cl.layout))
        self.estimator = Estimator(model, cl.layout, compute, opts, cl.gpu.hbm_bytes, cl.profile,
                                   host_launch(sc, system))
        if sc.sim.nccl_sms:     # NCCL's CTAs beside the compute, as sim.setup.comm_sms
            self.estimator.costs.comm_sms = layout_comm_sms(cl.layout, cl.gpu.arch)
        self.system = system
        self.world = cl.layout.world_size
        from sim.cost import gpu_hour_usd
        self.price = gpu_hour_usd(system, sc.cluster)[0]   # the scenario's price, or the table's
        self.peak = system.gpu_spec.peak_flops(w.precision)


@lru_cache(maxsize=64)
def _context(key: str) -> _Context:
    return _Context(json.loads(key))


def context(base: dict[str, Any], axis: dict[str, Any]) -> _Context:
    return _context(json.dumps(scenario_for(base, axis, None), sort_keys=True))


def _plan_of(ctx: _Context, plan: dict[str, Any] | None) -> parallel.ParallelPlan:
    w = ctx.scenario.workload
    p = w.parallel
    f = {"tp": p.tp, "pp": p.pp, "dp": p.dp, "vpp": p.vpp, "sequence_parallel": p.sequence_parallel,
         "zero": p.zero, "micro_batch": w.micro_batch,
         "recompute": parallel.plan_recompute(w.recompute, w.recompute_modules),
         "global_batch": w.global_batch,
         "ep": p.ep, "etp": p.etp,
         "pipeline_layers": tuple(p.pipeline_layers) if p.pipeline_layers else None}
    f |= {k: (tuple(v) if k == "pipeline_layers" and v else v) for k, v in (plan or {}).items()
          if k not in OFFLOAD_KEYS}
    extra = plan_kwargs(p, ctx.system.gpus_per_node)
    extra["tp_comm_overlap"] = f.pop("tp_comm_overlap", p.tp_comm_overlap)
    if f["dp"] is None:
        f["dp"] = parallel.derive_dp(ctx.world, f["tp"], f["pp"], p.cp)
    sched = "interleaved" if f["vpp"] > 1 else ("1f1b" if p.schedule == "interleaved" else p.schedule)
    return parallel.ParallelPlan(schedule=sched, **f, **extra)


def _offload_of(ctx: _Context, plan: parallel.ParallelPlan, raw: dict[str, Any] | None):
    """The configuration's host offload (plan keys override the scenario's)."""
    from sim.training_config import OffloadConfig, offload_options
    w = ctx.scenario.workload
    cfg = w.offload or OffloadConfig()
    cfg = cfg.model_copy(update={
        **({"activations": raw["offload_activations"]} if raw and "offload_activations" in raw else {}),
        **({"optimizer": raw["offload_optimizer"]} if raw and "offload_optimizer" in raw else {})})
    return offload_options(w.model_copy(update={"offload": cfg}), ctx.system,
                           ctx.estimator.model, plan, w.attention == "flash")


def _plan_columns(plan: parallel.ParallelPlan | None, raw: dict[str, Any] | None) -> dict:
    src = raw or {}
    if plan is not None:
        src = {"tp": plan.tp, "pp": plan.pp, "dp": plan.dp, "vpp": plan.vpp,
               "micro_batch": plan.micro_batch, "recompute": parallel.recompute_label(plan.recompute),
               "sequence_parallel": plan.sequence_parallel, "zero": plan.zero,
               "global_batch": plan.global_batch, "ep": plan.ep, "etp": plan.etp,
               "pipeline_layers": list(plan.pipeline_layers) if plan.pipeline_layers else None,
               "tp_comm_overlap": plan.tp_comm_overlap,
               **{k: (raw or {}).get(k) for k in OFFLOAD_KEYS}}
    return {k: src.get(k) for k in PLAN_KEYS}


def evaluate(base: dict[str, Any], config: Config) -> dict[str, Any]:
    """Closed-form row of one configuration: metrics, or status + reason."""
    if is_rl(base):                 # an RL step per axis point (sim/rl_sweep.py)
        return evaluate_rl(base, config)
    cid, axis, raw = config
    row: dict[str, Any] = {"id": cid, **{f"axis.{k}": _cell(v) for k, v in axis.items()}}
    from sim.sweep.pool_rows import is_pooled, pooled_row
    if is_pooled(data := scenario_for(base, axis, raw)):     # heterogeneous: DES rows
        return pooled_row(data, row, _plan_columns)
    try:
        ctx = context(base, axis)
        plan = _plan_of(ctx, raw)
        if plan.global_batch <= 0:
            raise InfeasiblePlanError(f"dp={plan.dp} exceeds the global batch")
        parallel.validate(plan, ctx.estimator.model, ctx.world)
        plans.check_supported(plan)
    except InfeasiblePlanError as exc:
        return row | _plan_columns(None, raw) | _status("infeasible", reason_of(str(exc)), str(exc))
    except ClusterSimError as exc:
        return row | _plan_columns(None, raw) | _status("error", "invalid scenario", str(exc))
    row |= _plan_columns(plan, raw) | {"gpus": ctx.world}
    try:
        offload = _offload_of(ctx, plan, raw)
        plans.check_offload(offload, plan)
    except InfeasiblePlanError as exc:
        return row | _status("infeasible", reason_of(str(exc)), str(exc))
    except ClusterSimError as exc:
        return row | _status("error", "invalid scenario", str(exc))
    mem = ctx.estimator.memory_peak_gib(plan, offload)
    row["memory_peak_gib"] = mem
    if ctx.scenario.sim.check_memory and mem > ctx.estimator.hbm_gib:
        return row | _status("oom", "out of memory",
                             f"needs {mem:.1f} GiB, the GPU has {ctx.estimator.hbm_gib:.1f} GiB")
    t = ctx.estimator.iteration_time(plan, offload)
    return row | _status("ok", "", "") | metrics(ctx, plan, t, "")


def _cell(v: Any) -> Any:
    """Axis values that are lists of mappings (a pool mix) are stored as text in Parquet."""
    if isinstance(v, list) and v and isinstance(v[0], dict):
        return json.dumps(v, sort_keys=True)
    return v


def _status(status: str, reason: str, detail: str) -> dict[str, str]:
    return {"status": status, "reason": reason, "detail": detail}


def metrics(ctx: _Context, plan: parallel.ParallelPlan, t: float, prefix: str) -> dict[str, float]:
    model = ctx.estimator.model
    tokens = plan.global_batch * model.seq_len
    out = {"iteration_time_s": t, "tokens_per_s": tokens / t,
           "samples_per_s": plan.global_batch / t,
           "mfu": model_flops(model, tokens) / (t * ctx.world * ctx.peak)}
    if ctx.price is not None:
        out["usd_per_hour"] = ctx.price * ctx.world
        out["usd_per_mtoken"] = out["usd_per_hour"] / 3600 / (tokens / t) * 1e6
    return {prefix + k: v for k, v in out.items()}


def evaluate_chunk(base: dict[str, Any], configs: list[Config]) -> list[dict[str, Any]]:
    return [evaluate(base, c) for c in configs]


def verify(base: dict[str, Any], config: Config) -> dict[str, Any]:
    """Stage 2: the discrete-event simulation of one configuration, at its fidelity."""
    cid, axis, raw = config
    if is_rl(base):
        return {"id": cid, "des_status": "skipped", "des_detail": "RL rows are simulated in stage 1"}
    data = scenario_for(base, axis, raw)
    from sim.sweep.pool_rows import is_pooled, pooled_verify
    if is_pooled(data):
        return pooled_verify(data, cid)
    ctx = context(base, axis)
    try:
        res = simulate(scenario_mod.parse(data, f"sweep row {cid}"), band=False)
    except ClusterSimError as exc:
        return {"id": cid, "des_status": "error", "des_detail": str(exc)}
    plan = _plan_of(ctx, raw)
    x = res.extra
    return {"id": cid, "des_status": "ok", "des_detail": "", "des_fidelity": res.fidelity,
            **metrics(ctx, plan, res.iteration_time_s, "des_"),
            "des_energy_j": x.get("energy_j"), "des_joules_per_token": x.get("joules_per_token"),
            "des_cost_usd": x.get("cost_usd"),
            "des_cost_usd_per_mtoken": x.get("cost_usd_per_million_tokens")}
