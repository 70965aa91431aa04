"""Sweep rows of heterogeneous clusters (``cluster.pools`` with several pools).

The closed-form estimator knows one system, so a pooled configuration is played by the
discrete-event simulator in stage 1 already (its row is exact, and marked
``fidelity: des``). Price per hour sums each pool's GPUs at its price.
"""

from __future__ import annotations

from typing import Any

from hw_models import catalog
from hw_models.errors import ClusterSimError, InfeasiblePlanError, OutOfMemoryError
from sim import scenario as scenario_mod
from sim.cost import gpu_hour_usd
from workloads.parallel import plan_recompute, recompute_label


def _status(status: str, reason: str, detail: str) -> dict[str, str]:
    return {"status": status, "reason": reason, "detail": detail}


def is_pooled(data: dict[str, Any]) -> bool:
    return len((data.get("cluster") or {}).get("pools") or []) > 1


def usd_per_hour(sc) -> float | None:
    total = 0.0
    for p in sc.cluster.pools:
        system = catalog.system(p.system)
        rate, _ = gpu_hour_usd(system, sc.cluster, p.price_per_gpu_hour)
        if rate is None:
            return None
        total += rate * p.nodes * system.gpus_per_node
    return total


def _metrics(sc, res) -> dict[str, Any]:
    out = {"iteration_time_s": res.iteration_time_s, "tokens_per_s": res.tokens_per_s,
           "samples_per_s": sc.workload.global_batch / res.iteration_time_s, "mfu": res.mfu}
    usd = usd_per_hour(sc)
    if usd is not None:
        out["usd_per_hour"] = usd
        out["usd_per_mtoken"] = usd / 3600 / res.tokens_per_s * 1e6
    return out


def pooled_verify(data: dict[str, Any], cid: int) -> dict[str, Any]:
    """Stage 2 of a pooled row: the same simulation, reported with the des_ prefix."""
    from sim.simulate import simulate
    try:
        sc = scenario_mod.parse(data, f"sweep row {cid}")
        res = simulate(sc, band=False)
    except ClusterSimError as exc:
        return {"id": cid, "des_status": "error", "des_detail": str(exc)}
    x = res.extra
    return {"id": cid, "des_status": "ok", "des_detail": "", "des_fidelity": res.fidelity,
            **{f"des_{k}": v for k, v in _metrics(sc, res).items()},
            "des_energy_j": x.get("energy_j"), "des_joules_per_token": x.get("joules_per_token"),
            "des_cost_usd": x.get("cost_usd"),
            "des_cost_usd_per_mtoken": x.get("cost_usd_per_million_tokens")}


def pooled_row(data: dict[str, Any], row: dict[str, Any], plan_columns) -> dict[str, Any]:
    """``row``: id and axis columns so far; ``plan_columns(plan, raw)``: the plan fields."""
    from sim.simulate import simulate
    from sim.sweep.evaluate import reason_of
    try:
        sc = scenario_mod.parse(data, f"sweep row {row['id']}")
        res = simulate(sc, band=False)
    except OutOfMemoryError as exc:
        return row | plan_columns(None, None) | _status("oom", "out of memory", str(exc))
    except InfeasiblePlanError as exc:
        return row | plan_columns(None, None) | _status("infeasible", reason_of(str(exc)), str(exc))
    except ClusterSimError as exc:
        return row | plan_columns(None, None) | _status("error", "invalid scenario", str(exc))
    w, x = sc.workload, res.extra
    p = w.parallel
    plan = {"tp": p.tp, "pp": p.pp, "dp": x["plan"]["dp"], "vpp": p.vpp,
            "micro_batch": w.micro_batch,
            "recompute": recompute_label(plan_recompute(w.recompute, w.recompute_modules)),
            "sequence_parallel": p.sequence_parallel, "zero": p.zero,
            "global_batch": w.global_batch, "pipeline_layers": x["pipeline_layers"],
            "ep": p.ep, "etp": p.etp}
    out = _metrics(sc, res)
    return (row | plan_columns(None, plan) | {"gpus": res.world_size,
                                              "memory_peak_gib": res.memory_peak_gib}
            | _status("ok", "", "") | out
            | {"pool_mix": " ".join(f"{q.name}:{q.nodes}" for q in sc.cluster.pools),
               "energy_j": x.get("energy_j"), "joules_per_token": x.get("joules_per_token"),
               "cost_usd_per_mtoken": x.get("cost_usd_per_million_tokens")})
