"""Sweep summary: the best plans, Pareto fronts, and why plans were rejected."""

from __future__ import annotations

from typing import Any

import pandas as pd

RATE = "tokens_per_s"


def ranked(frame: pd.DataFrame) -> pd.DataFrame:
    """Feasible rows, best first: by the DES rate where verified, else the closed form
    (ties broken by id so the order is deterministic)."""
    ok = frame[frame.status == "ok"].copy()
    if ok.empty:
        return ok
    des = ok.get(f"des_{RATE}")
    ok["_rate"] = des.fillna(ok[RATE]) if des is not None else ok[RATE]
    return ok.sort_values(["_rate", "id"], ascending=[False, True]).drop(columns="_rate")


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


def plan_label(r: pd.Series) -> str:
    pl = "" if r.get("pipeline_layers") is None else " uneven"
    axes = "".join(f" {k[5:].split('.')[-1]}={v}" for k, v in r.items() if k.startswith("axis."))
    tpo = r.get("tp_comm_overlap")
    extra = (f" tp-overlap:{tpo}" if isinstance(tpo, str) and tpo != "none" else "") + (
        f" offload-act:{r['offload_activations']:g}" if _set(r.get("offload_activations")) else "") + (
        " offload-opt" if _set(r.get("offload_optimizer")) else "")
    ep = r.get("ep")
    moe = f" ep{int(ep)} etp{int(r.get('etp'))}" if ep is not None and ep == ep and ep > 1 else ""
    return (f"tp{r.tp} pp{r.pp} dp{r.dp} vpp{r.vpp}{moe} mb{r.micro_batch} {r.recompute}"
            f"{' sp' if r.sequence_parallel else ''} zero{r.zero}{pl}{extra}{axes}")


def _set(value) -> bool:
    return value is not None and not pd.isna(value) and bool(value)


def summarize(frame: pd.DataFrame, top: int) -> dict[str, Any]:
    best = ranked(frame)
    rejected = frame[frame.status != "ok"].reason.value_counts().sort_index()
    out: dict[str, Any] = {
        "evaluated": int(len(frame)), "feasible": int((frame.status == "ok").sum()),
        "rejected": {str(k): int(v) for k, v in rejected.items()},
        "top": [_record(r) for _, r in best.head(top).iterrows()],
        "pareto_gpus": pareto(frame, "gpus"),
    }
    if "usd_per_hour" in frame and frame.usd_per_hour.notna().any():
        out["pareto_cost"] = pareto(frame, "usd_per_hour")
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
        lines.append(f"{i:4d}  {r['plan']:44s} {int(r['gpus']):6d} {r['iteration_time_s']:8.3f} "
                     f"{r['tokens_per_s']:11,.0f} {r['mfu']:6.1%} {r['memory_peak_gib']:8.1f} "
                     f"{'' if des is None else f'{des:10.3f}'}")
    for key, name in (("pareto_gpus", "gpus"), ("pareto_cost", "usd_per_hour")):
        if summary.get(key):
            pts = ", ".join(f"{p[name]:g}: {p[RATE]:,.0f}" for p in summary[key])
            lines.append(f"Pareto tokens/s vs {name}: {pts}")
    return "\n".join(lines)
