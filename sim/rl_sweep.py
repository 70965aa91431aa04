"""Sweep rows for ``workload: kind: rl``: every axis point (a placement, a rollout or
training plan, off-policy steps...) is one simulated RL step. The sweep machinery
(sim/sweep: axes, chunks, executors, Parquet, ranking) is shared with training sweeps; the
ranking rate is the step's tokens per second, ``iteration_time_s`` is the step time."""

from __future__ import annotations

import json
from typing import Any

from hw_models import catalog
from hw_models.errors import ClusterSimError, InfeasiblePlanError, OutOfMemoryError
from sim import scenario as scenario_mod

METRICS = ("step_time_s", "generation_s", "logprob_s", "train_s", "weight_sync_s", "offload_s",
           "idle_s", "tokens_per_s_per_gpu")


def is_rl(base: dict[str, Any]) -> bool:
    w = base.get("workload")
    return isinstance(w, dict) and w.get("kind") == "rl"


def evaluate_rl(base: dict[str, Any], config) -> dict[str, Any]:
    from sim.rl import simulate_rl
    from sim.sweep.evaluate import scenario_for
    cid, axis, _ = config
    # Parquet columns hold one type: a mapping axis value (a pool split) is kept as JSON.
    row: dict[str, Any] = {"id": cid, **{f"axis.{k}": json.dumps(v) if isinstance(v, dict | list)
                                         else v for k, v in axis.items()}}
    try:
        sc = scenario_mod.parse(scenario_for(base, axis, None), f"sweep row {cid}")
        res = simulate_rl(sc)
    except OutOfMemoryError as exc:
        return row | _plan(base, axis) | _status("oom", "out of memory", str(exc))
    except InfeasiblePlanError as exc:
        return row | _plan(base, axis) | _status("infeasible", "infeasible", str(exc))
    except ClusterSimError as exc:
        return row | _plan(base, axis) | _status("error", "invalid scenario", str(exc))
    m = res.metrics
    usd = _usd_per_hour(sc, res)
    out = row | _plan(base, axis, sc, res.extra["placement"]) | _status("ok", "", "") | {
        k: m[k] for k in METRICS} | {
        "gpus": res.world_size, "iteration_time_s": m["step_time_s"],
        "tokens_per_s": m["step_tokens"] / m["step_time_s"],
        "samples_per_s": sc.workload.samples / m["step_time_s"],
        "mfu": float("nan"), "memory_peak_gib": float("nan")}
    if usd is not None:
        out["usd_per_hour"] = usd
        out["usd_per_mtoken"] = out["usd_per_hour"] / 3600 / out["tokens_per_s"] * 1e6
    return out


def _usd_per_hour(sc, res) -> float | None:
    """Rental price of the step's GPUs: each named pool's GPUs at its system's price."""
    place = res.extra["placement"]
    if not isinstance(place, dict) or "rollout_pool" not in place:
        price = catalog.system(sc.cluster.system).cost_per_gpu_hour_usd
        return None if price is None else price * res.world_size
    pools = {p.name: p for p in sc.cluster.pools}
    total = 0.0
    for phase in ("rollout", "train"):
        pool = pools[place[f"{phase}_pool"]]
        price = pool.price_per_gpu_hour or catalog.system(pool.system).cost_per_gpu_hour_usd
        if price is None:
            return None
        total += price * place[f"{phase}_gpus"]
    return total


def _plan(base: dict[str, Any], axis: dict[str, Any], sc=None, placement=None) -> dict[str, Any]:
    """The training plan's columns (shared with training sweeps) plus the RL placement."""
    if sc is None:
        return {}
    w = sc.workload
    p = w.train.parallel
    return {"tp": p.tp, "pp": p.pp, "vpp": p.vpp, "micro_batch": w.train.micro_batch,
            "recompute": w.train.recompute, "sequence_parallel": p.sequence_parallel,
            "zero": p.zero, "global_batch": w.train.global_batch, "pipeline_layers": None,
            "dp": None, "rollout_tp": w.rollout.parallel.tp, "rollout_pp": w.rollout.parallel.pp,
            "placement": _placement_label(w, placement),
            "off_policy_steps": w.off_policy_steps}


def _status(status: str, reason: str, detail: str) -> dict[str, str]:
    return {"status": status, "reason": reason, "detail": detail}


def _placement_label(w, placement) -> str:
    """'colocated', '8+8', or '8 gen + 8 trainer' on named pools."""
    if w.colocated:
        return "colocated"
    p = placement if isinstance(placement, dict) else w.placement.model_dump()
    if p.get("rollout_pool"):
        return f"{p['rollout_gpus']} {p['rollout_pool']} + {p['train_gpus']} {p['train_pool']}"
    return f"{p['rollout_gpus']}+{p['train_gpus']}"
