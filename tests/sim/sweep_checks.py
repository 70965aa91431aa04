"""Helper for the estimator-equals-DES sweep checks: every feasible row of a small sweep
against the DES's play of the same configuration."""

from __future__ import annotations

import pytest


def rows_equal_des(raw: dict, rel: float = 1e-9) -> int:
    """Evaluate every configuration of the sweep ``raw`` (a sweep file's mapping), check
    each feasible row's iteration time against ``evaluate.verify``'s DES play to ``rel``,
    and return how many rows were checked."""
    from sim.sweep import evaluate, run, spec
    sw = spec.parse(raw)
    checked = 0
    for config in run.configurations(sw):
        row = evaluate.evaluate(sw.base, config)
        if row["status"] != "ok":
            continue
        des = evaluate.verify(sw.base, config)["des_iteration_time_s"]
        assert row["iteration_time_s"] == pytest.approx(des, rel=rel), config
        checked += 1
    return checked
