"""Cost of a simulated iteration or serving run (docs/energy.md).

Two modes:
- rental (default): USD per GPU-hour, from ``cluster.price_per_gpu_hour`` or the dated
  table hw_models/data/prices.yaml (power is in the rent);
- capital (``cluster.capex``): the purchase price per GPU spread evenly over the
  lifetime, plus the simulated energy at the power price.
"""

from __future__ import annotations

from typing import Any

from hw_models.catalog import prices

HOUR = 3600.0


def gpu_hour_usd(system, cfg, pool_price: float | None = None) -> tuple[float | None, str]:
    """(USD per GPU-hour, where it came from) in rental mode: the pool's own price, the
    cluster's, or the system's default."""
    if pool_price is not None:
        return pool_price, "cluster.pools[].price_per_gpu_hour"
    if cfg.price_per_gpu_hour is not None:
        return cfg.price_per_gpu_hour, "cluster.price_per_gpu_hour"
    if system.cost_per_gpu_hour_usd is not None:
        return system.cost_per_gpu_hour_usd, f"prices.yaml as of {prices()['as_of']}"
    return None, ""


def cost_fields(groups: list[tuple[Any, int]], cfg, seconds: float, tokens: float,
                energy_j: float | None) -> dict[str, Any]:
    """``groups``: (system, GPUs) of each part of the cluster; ``cfg``: the scenario's
    ``cluster`` block; ``seconds``: what is paid for (an iteration, a serving run)."""
    if cfg.capex is not None:
        return _capex(groups, cfg.capex, seconds, tokens, energy_j)
    usd, why = 0.0, set()
    pool_prices = [p.price_per_gpu_hour for p in cfg.pools] if cfg.pools and \
        len(cfg.pools) == len(groups) else [None] * len(groups)
    for (system, gpus), own in zip(groups, pool_prices, strict=True):
        rate, src = gpu_hour_usd(system, cfg, own)
        if rate is None:
            name = system.gpu_spec.name
            return {"cost_usd": None, "cost_usd_per_million_tokens": None,
                    "cost": {"missing": f"no default GPU-hour price for {name}; set "
                                        "cluster.price_per_gpu_hour or cluster.capex"}}
        usd += rate * gpus * seconds / HOUR
        why.add(src)
    return _fields(usd, tokens, {"mode": "rental", "source": "; ".join(sorted(why))})


def _capex(groups, capex, seconds: float, tokens: float, energy_j: float | None):
    table = prices()
    years = capex.lifetime_years or table["lifetime_years"]["value"]
    kwh_usd = (capex.power_usd_per_kwh if capex.power_usd_per_kwh is not None
               else table["power_usd_per_kwh"]["value"])
    gpus = sum(n for _, n in groups)
    hardware = capex.price_per_gpu_usd / (years * 8760 * HOUR) * gpus * seconds
    if energy_j is None:
        return {"cost_usd": None, "cost_usd_per_million_tokens": None,
                "cost": {"missing": "capital-cost mode needs the energy, and the GPU has "
                                    "no published TDP"}}
    power = energy_j / 3.6e6 * kwh_usd
    return _fields(hardware + power, tokens, {
        "mode": "capex", "hardware_usd": hardware, "power_usd": power, "lifetime_years": years,
        "power_usd_per_kwh": kwh_usd})


def _fields(usd: float, tokens: float, detail: dict[str, Any]) -> dict[str, Any]:
    return {"cost_usd": usd,
            "cost_usd_per_million_tokens": usd / tokens * 1e6 if tokens else None,
            "cost": detail}


def energy_and_cost(timeline, graph, costs_of, parts, cluster_cfg, seconds: float,
                    tokens: float):
    """Result fields (energy_j, avg_power_w_per_gpu, joules_per_token, cost_usd, ...)
    of one training iteration, and the per-rank power curve for the trace."""
    from sim.energy import training_energy
    energy, power = training_energy(timeline, graph, costs_of, parts, seconds, tokens,
                                    cluster_cfg.pue)
    groups = [(p.system, p.gpus) for p in parts.parts]
    return energy | cost_fields(groups, cluster_cfg, seconds, tokens, energy["energy_j"]), power


def run_cost(step: dict[str, Any], step_s: float, wall_s: float, run_energy_j: float | None
             ) -> float | None:
    """USD of a whole run: rent (or depreciation) for the wall time, plus in capital-cost
    mode the run's energy at the power price."""
    detail = step.get("cost") or {}
    if step.get("cost_usd") is None:
        return None
    if detail.get("mode") != "capex":
        return step["cost_usd"] / step_s * wall_s
    power = (run_energy_j or 0.0) / 3.6e6 * detail["power_usd_per_kwh"]
    return detail["hardware_usd"] / step_s * wall_s + power
