"""Whether a rebuilt calibration profile matches the committed one.

A fit rebuilt from the same inputs is not bit-identical across machines: the least-squares
optimum moves with the BLAS kernels of the CPU and with SciPy / NumPy releases (rebuilt on
another machine, the fitted A100 and Blackwell parameters moved by at most 0.35%, while
parameters fitted to ~0 stayed below 1e-6 and the printed fit-quality percentages moved by
0.01). The bootstrap quantiles of weakly determined parameters move much more (a fabric
curve's bytes_half p05 by 10x), so the ``uncertainty`` section is compared by its keys and
the order of its quantiles only. The ``fabric`` section is compared by what its curves
predict at the points of the sweeps they were fitted on (calibration/fabric_match.py):
some of its parameters are not determined by those sweeps and move far more than 1%."""

from __future__ import annotations

import math

REL = 0.01            # relative tolerance of a fitted value
TINY = 1e-6           # values fitted to ~0 (wave exponents, latencies at the bound)
QUALITY_ABS = 0.05    # the quality section's rounded error percentages


def _diff(new, old, path: str, out: list[str]) -> None:
    if isinstance(old, dict):
        if not isinstance(new, dict) or set(new) != set(old):
            out.append(f"{path}: keys differ")
            return
        for k in old:
            _diff(new[k], old[k], f"{path}.{k}", out)
    elif isinstance(old, list):
        if not isinstance(new, list) or len(new) != len(old):
            out.append(f"{path}: lengths differ")
            return
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            _diff(a, b, f"{path}[{i}]", out)
    elif isinstance(old, float) or (isinstance(new, float) and isinstance(old, int)
                                    and not isinstance(old, bool)):
        tol = QUALITY_ABS if path.startswith(".quality") else TINY
        if not (isinstance(new, int | float)
                and math.isclose(new, old, rel_tol=REL, abs_tol=tol)):
            out.append(f"{path}: {new} against {old}")
    elif new != old:
        out.append(f"{path}: {new!r} against {old!r}")


def _quantiles(new, old, path: str, out: list[str]) -> None:
    if not isinstance(new, dict) or set(new) != set(old):
        out.append(f"{path}: keys differ")
        return
    for k in old:
        if isinstance(old[k], dict) and "p05" not in old[k]:
            _quantiles(new[k], old[k], f"{path}.{k}", out)
        elif not new[k]["p05"] <= new[k]["p95"]:
            out.append(f"{path}.{k}: p05 above p95")


def mismatches(new: dict, committed: dict) -> list[str]:
    """What of ``new`` does not match the committed profile: a fitted value off by more
    than REL (TINY for values fitted to ~0), any other entry not equal, an uncertainty
    quantile missing or out of order, a fabric curve whose predicted time at one of its
    measured points is more than fabric_match.REL off. Empty when they match."""
    out: list[str] = []
    by_value = ("uncertainty", "fabric")
    _diff({k: v for k, v in new.items() if k not in by_value},
          {k: v for k, v in committed.items() if k not in by_value}, "", out)
    if "uncertainty" in committed:
        _quantiles(new.get("uncertainty"), committed["uncertainty"], ".uncertainty", out)
    if "fabric" in committed or "fabric" in new:
        if "fabric" not in committed or "fabric" not in new:
            out.append(".fabric: keys differ")
        else:
            from calibration.fabric_match import fabric_mismatches
            out += fabric_mismatches(new["fabric"], committed)
    return out
