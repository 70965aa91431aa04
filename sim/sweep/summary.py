"""Sweep summary: the best plans, Pareto fronts, and why plans were rejected."""

from __future__ import annotations

from typing import Any

import pandas as pd

RATE = "tokens_per_s"


# objective -> (column, its DES counterpart, higher is better)
OBJECTIVES = {"time": (RATE, f"des_{RATE}", True),
              "cost": ("usd_per_mtoken", "des_cost_usd_per_mtoken", False),
              "energy": ("joules_per_token", "des_joules_per_token", False)}


def ranked(frame: pd.DataFrame, objective: str = "time") -> pd.DataFrame:
    """Feasible rows, best first by the objective: the DES value where verified, else the
    closed form (energy: DES-verified rows only, the rest after them by rate); ties broken
    by id so the order is deterministic."""
    ok = frame[frame.status == "ok"].copy()
    if ok.empty:
        return ok
    col, des_col, higher = OBJECTIVES[objective]
    des = ok.get(des_col)
    closed = ok[col] if col in ok else pd.Series(float("nan"), index=ok.index)
    key = des.fillna(closed) if des is not None else closed
    ok["_key"] = -key if higher else key
    ok["_rate"] = -ok[RATE]
    return ok.sort_values(["_key", "_rate", "id"], na_position="last").drop(
        columns=["_key", "_rate"])


def pareto(frame: pd.DataFrame, cost: str) -> list[dict[str, Any]]:
    """Rows no other row beats on both lower ``cost`` and higher throughput."""
    ok = frame[frame.status == "ok"]
    if ok.empty or cost not in ok:
        return []
    front, best = [], -1.0
    for _, r in ok.sort_values([cost, RATE], ascending=[True, False]).iterrows():
        if r[RATE] > best:
            front.append({cost: r[cost], RATE: r[RATE], "id": int(r["id"])})
            best = r[RATE]
    return front


def energy_column(frame: pd.DataFrame) -> pd.Series | None:
    """Joules per token of each row: simulated (DES-verified or pooled rows), else NaN."""
    cols = [c for c in ("des_joules_per_token", "joules_per_token") if c in frame]
    if not cols:
        return None
    col = frame[cols[0]]
    for c in cols[1:]:
        col = col.fillna(frame[c])
    return col if col.notna().any() else None


def plan_label(r: pd.Series) -> str:
    if r.get("placement") is not None:         # an RL step (sim/rl_sweep.py)
        return (f"{r.placement} rollout tp{int(r.rollout_tp)} pp{int(r.rollout_pp)} train "
                f"tp{int(r.tp)} pp{int(r.pp)} off-policy {int(r.off_policy_steps)}")
    pl = "" if r.get("pipeline_layers") is None else " uneven"
    axes = "".join(f" {k[5:].split('.')[-1]}={v}" for k, v in r.items()
                   if k.startswith("axis.") and not k.startswith("axis.cluster.pools"))
    if isinstance(r.get("pool_mix"), str):
        axes += f" pools {r['pool_mix']}"
    tpo = r.get("tp_comm_overlap")
    extra = (f" tp-overlap:{tpo}" if isinstance(tpo, str) and tpo != "none" else "") + (
        f" offload-act:{r['offload_activations']:g}" if _set(r.get("offload_activations")) else "") + (
        " offload-opt" if _set(r.get("offload_optimizer")) else "")
    ep = r.get("ep")
    moe = f" ep{int(ep)} etp{int(r.get('etp'))}" if ep is not None and ep == ep and ep > 1 else ""
    tp, pp, dp, vpp, mb, zero = (_whole(r.get(k)) for k in ("tp", "pp", "dp", "vpp",
                                                             "micro_batch", "zero"))
    return (f"tp{tp} pp{pp} dp{dp} vpp{vpp}{moe} mb{mb} {r.recompute}"
            f"{' sp' if r.sequence_parallel else ''} zero{zero}{pl}{extra}{axes}")


def _whole(v):
    """A plan number as an integer (a column with infeasible rows holds floats)."""
    return int(v) if isinstance(v, float) and v == v and v.is_integer() else v


def _set(value) -> bool:
    return value is not None and not pd.isna(value) and bool(value)


def summarize(frame: pd.DataFrame, top: int, objective: str = "time") -> dict[str, Any]:
    best = ranked(frame, objective)
    rejected = frame[frame.status != "ok"].reason.value_counts().sort_index()
    out: dict[str, Any] = {
        "evaluated": int(len(frame)), "feasible": int((frame.status == "ok").sum()),
        "rejected": {str(k): int(v) for k, v in rejected.items()},
        "top": [_record(r) for _, r in best.head(top).iterrows()],
        "pareto_gpus": pareto(frame, "gpus"),
    }
    if "usd_per_hour" in frame and frame.usd_per_hour.notna().any():
        out["pareto_cost"] = pareto(frame, "usd_per_hour")
    energy = energy_column(frame)
    if energy is not None:
        out["pareto_energy"] = pareto(frame.assign(j_per_token=energy)[energy.notna()],
                                      "j_per_token")
    out["objective"] = objective
    return out


def _record(r: pd.Series) -> dict[str, Any]:
    rec = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in r.items()}
    rec = {k: v for k, v in rec.items() if not (isinstance(v, float) and v != v)}
    return rec | {"plan": plan_label(r)}


def table(summary: dict[str, Any]) -> str:
    lines = [f"evaluated {summary['evaluated']}  feasible {summary['feasible']}  "
             f"wall {summary['wall_s']:.1f} s  ({summary['plans_per_s']:,.0f} plans/s closed form)"]
    if summary["rejected"]:
        lines.append("rejected: " + ", ".join(f"{k} {v}" for k, v in summary["rejected"].items()))
    if summary["top"]:
        lines.append(f"{'rank':>4}  {'plan':44s} {'gpus':>6} {'iter s':>8} {'tok/s':>11} "
                     f"{'MFU':>6} {'mem GiB':>8} {'DES iter s':>10}")
    for i, r in enumerate(summary["top"], 1):
        des = r.get("des_iteration_time_s")
        mfu, mem = r.get("mfu"), r.get("memory_peak_gib")     # absent for RL rows
        lines.append(f"{i:4d}  {r['plan']:44s} {int(r['gpus']):6d} {r['iteration_time_s']:8.3f} "
                     f"{r['tokens_per_s']:11,.0f} {'' if mfu is None else f'{mfu:6.1%}':>6} "
                     f"{'' if mem is None else f'{mem:8.1f}':>8} "
                     f"{'' if des is None else f'{des:10.3f}'}")
    for key, name in (("pareto_gpus", "gpus"), ("pareto_cost", "usd_per_hour"),
                      ("pareto_energy", "j_per_token")):
        if summary.get(key):
            pts = ", ".join(f"{p[name]:g}: {p[RATE]:,.0f}" for p in summary[key])
            lines.append(f"Pareto tokens/s vs {name}: {pts}")
    return "\n".join(lines)
