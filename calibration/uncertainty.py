"""Prediction bands from a profile's bootstrap parameter spread.

A profile's ``uncertainty`` holds, per fit, the 5th and 95th bootstrap percentile of
every parameter (calibration/fitting.py). ``band_profiles`` (hw_models/profile.py, where the
simulator reads it) turns it into two profiles:
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

from hw_models.profile import Profile, band_profiles


@dataclass(frozen=True)
class Band:
    value: float
    low: float
    high: float
    unit: str = "s"

    def __str__(self) -> str:
        return f"{self.value:.4g} {self.unit} [{self.low:.4g}, {self.high:.4g}]"


def predict_band(predict: Callable[[Profile], float], profile: Profile, unit: str = "s") -> Band:
    """Run ``predict`` on the profile and on its fast and slow corners."""
    fast, slow = band_profiles(profile)
    value, a, b = predict(profile), predict(fast), predict(slow)
    return Band(value, min(a, b, value), max(a, b, value), unit)
