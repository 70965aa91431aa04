"""Expert-load imbalance of the RL rows' MoE policies from a published measurement.

NeMo RL trains its MoE policies with a frozen router and no load-balancing loss
(calibration/rl_recipes.py), so tokens per expert follow the pretrained router and the
slowest EP rank paces every MoE layer (workloads/moe_load.py). The measurement
(calibration/reference/modern/moe_expert_load.csv, with what is assumed): DeepSeek-R1
at 32-way expert parallelism without EPLB, the busiest rank's routed tokens / the mean,
averaged over the 58 MoE layers and the iterations. ``fit_zipf_exponent`` finds the Zipf
exponent whose rank max/mean at the published EP size, averaged over independent
placements of the popular experts (the published number averages layers, each with its
own placement), reproduces it; the expert-level max/mean of that law (E / H(E, s), no
placement involved) is the cross-check against the other published column. Rows of a
model the file does not cover (Qwen3-30B-A3B, Qwen3-235B-A22B) stay balanced.
"""

from __future__ import annotations

from functools import cache

from calibration.reference_files import reference_csv
from workloads.model import presets
from workloads.moe_load import Routing, ep_load

REF_FILE = "modern/moe_expert_load.csv"
FIT_PLACEMENTS = 1000     # placements averaged for the expectation the fit matches


def rank_max_mean(exponent: float, experts: int, ep: int,
                  placements: int = FIT_PLACEMENTS) -> float:
    """Busiest EP rank / mean rank of a Zipf law, averaged over ``placements`` seeds."""
    return ep_load(Routing("zipf", exponent, placements=placements), experts, ep).rank_max_mean


def fit_zipf_exponent(target: float, experts: int, ep: int,
                      placements: int = FIT_PLACEMENTS, tol: float = 1e-4) -> float:
    """The exponent s whose averaged rank max/mean is ``target`` (bisection; the
    statistic grows with s for a fixed set of placements)."""
    lo, hi = 0.0, 3.0
    if not rank_max_mean(lo, experts, ep, placements) <= target <= rank_max_mean(
            hi, experts, ep, placements):
        raise ValueError(f"rank max/mean {target} outside what a Zipf law reaches at "
                         f"{experts} experts, ep {ep}")
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if rank_max_mean(mid, experts, ep, placements) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _measured(model: str) -> dict | None:
    df = reference_csv(REF_FILE)
    rows = df[(df["applies_to"] == model) & (df["layer"] == "all")]
    if rows.empty:
        return None
    stat = {s: float(v) for s, v in zip(rows["statistic"], rows["value"], strict=True)}
    r = rows.iloc[0]
    return {"ep": int(r["ep"]), "experts": int(r["experts"]),
            "rank_max_over_mean": stat["rank_max_over_mean"],
            "expert_max_over_mean": stat.get("expert_max_over_mean")}


@cache
def fitted_exponent(model: str) -> float | None:
    """The Zipf exponent fitted on the model's published rank max/mean, or None."""
    m = _measured(model)
    if m is None:
        return None
    return round(fit_zipf_exponent(m["rank_max_over_mean"], m["experts"], m["ep"]), 4)


def rl_imbalance(model: str) -> dict | None:
    """``train.moe.imbalance`` of a NeMo RL row of ``model``: the fitted Zipf law with one
    placement per MoE layer, or None (balanced) where no measurement covers the model."""
    s = fitted_exponent(model)
    if s is None:
        return None
    spec = presets()[model]
    return {"kind": "zipf", "exponent": s, "placements": spec.layers - spec.moe.dense_layers}
