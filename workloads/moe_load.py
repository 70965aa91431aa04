"""Expert load: how routed tokens spread over experts and over expert-parallel ranks.

A routing distribution gives each expert its share of the routed token slots
(tokens x top_k): ``uniform`` (a force-balanced benchmark), ``zipf`` with an exponent s
(share of the i-th most popular expert proportional to 1/i^s), or a measured
tokens-per-expert ``histogram``. Experts sit on EP ranks in contiguous blocks of E/ep
(Megatron-Core's placement); the popularity ranks of a Zipf law are assigned to experts
by a permutation drawn from the scenario's seed, since nothing ties popularity to an
expert's index. Each MoE layer's router ranks its experts independently, so a Zipf law
may be averaged over ``placements`` independent permutations (seed, seed + 1, ...): the
step sums the layers, each paced by its own slowest rank, so it pays the mean of the
per-layer rank loads (1: one placement for every layer). ``capacity_factor`` c caps each expert at c x its balanced share
(GShard / Switch token dropping); None is dropless.

Synchronous all-to-alls make every EP rank wait for the slowest: the step pays for the
rank that receives the most tokens, ``rank_factor`` x the balanced count.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import numpy as np

from hw_models.errors import ClusterSimError


@dataclass(frozen=True)
class Routing:
    kind: Literal["uniform", "zipf", "histogram"] = "uniform"
    exponent: float = 0.0
    histogram: tuple[float, ...] | None = None
    capacity_factor: float | None = None
    seed: int = 0
    placements: int = 1


@dataclass(frozen=True)
class Load:
    expert_max_mean: float      # busiest expert / mean expert (after dropping)
    rank_factor: float          # slowest EP rank's tokens / balanced tokens per rank
    rank_max_mean: float        # busiest EP rank / mean EP rank (after dropping)
    dropped: float              # fraction of routed token slots dropped by the capacity

    def summary(self) -> dict[str, float]:
        return {"expert_load_max_over_mean": self.expert_max_mean,
                "ep_rank_load_max_over_mean": self.rank_max_mean,
                "slowest_ep_rank_tokens_over_balanced": self.rank_factor,
                "dropped_token_fraction": self.dropped}


def expert_shares(r: Routing, experts: int, seed: int | None = None) -> np.ndarray:
    """Share of routed token slots per expert (sums to 1), in expert-index order; a Zipf
    law's popularity order placed by ``seed`` (default ``r.seed``)."""
    if r.kind == "uniform":
        return np.full(experts, 1.0 / experts)
    if r.kind == "zipf":
        w = 1.0 / np.arange(1, experts + 1) ** r.exponent
        w = w[np.random.default_rng(r.seed if seed is None else seed).permutation(experts)]
        return w / w.sum()
    h = np.asarray(r.histogram or (), dtype=float)
    if len(h) != experts:
        raise ClusterSimError(f"workload.moe.imbalance histogram has {len(h)} entries but the "
                              f"model has {experts} experts; give one token count per expert")
    if not np.isfinite(h).all() or (h < 0).any() or h.sum() <= 0:
        raise ClusterSimError("workload.moe.imbalance histogram: token counts must be finite, "
                              ">= 0 and not all zero")
    return h / h.sum()


def _one_placement(r: Routing, experts: int, ep: int, seed: int) -> Load:
    shares = expert_shares(r, experts, seed)
    if r.capacity_factor is not None:
        shares = np.minimum(shares, r.capacity_factor / experts)
    kept = float(shares.sum())
    per_rank = shares.reshape(ep, experts // ep).sum(axis=1)
    return Load(expert_max_mean=float(shares.max() / (kept / experts)),
                rank_factor=float(per_rank.max() * ep),
                rank_max_mean=float(per_rank.max() / (kept / ep)),
                dropped=1.0 - kept)


def ep_load(r: Routing, experts: int, ep: int) -> Load:
    """The EP group's load; a Zipf law with ``placements`` > 1 averages its per-placement
    loads (one placement per MoE layer)."""
    n = r.placements if r.kind == "zipf" else 1
    loads = [_one_placement(r, experts, ep, r.seed + i) for i in range(n)]
    return Load(*(float(np.mean([getattr(x, f.name) for x in loads])) for f in fields(Load)))
