"""Prediction bands from a profile's bootstrap parameter spread.

A profile's ``uncertainty`` holds, per fit, the 5th and 95th bootstrap percentile of
every parameter (calibration/fitting.py). ``band_profiles`` turns it into two profiles:
``fast`` with every parameter at the end of its interval that makes operations quicker
and ``slow`` at the other end. Running the same prediction on both gives a band::

    band = predict_band(lambda p: simulate_with(p).iteration_s, profile)
    str(band)   # '13.7 s [13.2, 14.1]'

All parameters move together, so the band is a corner bound: wider (more cautious)
than a joint 90% interval of correlated parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hw_models.profile import Profile

# +1: a larger value makes operations faster; -1: slower; absent: left at the fit
# (gamma bends the curve both ways around bytes_half).
FASTER = {"eff_max": 1, "bw_eff": 1, "roofline_p": 1, "flops_half": -1, "seq_half": -1,
          "launch_us": -1, "latency_us": -1, "bytes_half": -1}
# Schema upper bounds that the bootstrap tail must not cross.
CAPS = {("gemm", "eff_max"): 1.0, ("gemm", "bw_eff"): 1.0, ("attention", "eff_max"): 1.0, ("memory", "bw_eff"): 1.0,
        ("memory_ops", "bw_eff"): 1.0, ("collectives", "eff_max"): 1.5}


def _target(data: dict[str, Any], key: str) -> tuple[str, dict[str, Any]] | None:
    """The parameter mapping an uncertainty key names ('gemm.fp16', 'memory.launch',
    'collectives.nvlink.all_gather')."""
    section, _, rest = key.partition(".")
    if section == "memory":
        return section, data["memory"]
    block = data.get(section)
    if isinstance(block, dict) and rest in block:
        return section, block[rest]
    return None


def _corner(profile: Profile, direction: int) -> Profile:
    data = profile.model_dump()
    for key, params in profile.uncertainty.items():
        found = _target(data, key)
        if found is None:
            continue
        section, target = found
        for name, interval in params.items():
            sign = FASTER.get(name)
            if sign is None or name not in target:
                continue
            value = interval["p95"] if sign * direction > 0 else interval["p05"]
            cap = CAPS.get((section, name))
            target[name] = min(value, cap) if cap else value
    data["name"] = f"{profile.name}-{'fast' if direction > 0 else 'slow'}"
    return Profile(**data)


def band_profiles(profile: Profile) -> tuple[Profile, Profile]:
    """(fast, slow): the profile with every parameter at its quick / slow bootstrap end."""
    return _corner(profile, +1), _corner(profile, -1)


@dataclass(frozen=True)
class Band:
    value: float
    low: float
    high: float
    unit: str = "s"

    def __str__(self) -> str:
        return f"{self.value:.4g} {self.unit} [{self.low:.4g}, {self.high:.4g}]"

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def predict_band(predict: Callable[[Profile], float], profile: Profile, unit: str = "s") -> Band:
    """Run ``predict`` on the profile and on its fast and slow corners."""
    fast, slow = band_profiles(profile)
    value, a, b = predict(profile), predict(fast), predict(slow)
    return Band(value, min(a, b, value), max(a, b, value), unit)
