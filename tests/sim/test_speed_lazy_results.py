"""A training result's tables (memory, timeline, power) are built when first read, so the
``simulate`` command, which prints none of them, never imports pandas; what is read is
the same table the eager code built."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sim.energy import rank_curve
from sim.result import Columns, SimResult
from sim.simulate import simulate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def result(small_scenario) -> SimResult:
    return simulate(small_scenario, band=False)


def test_tables_are_dataframes_when_read(result):
    assert isinstance(result.memory, pd.DataFrame)
    assert isinstance(result.timeline, pd.DataFrame)
    assert isinstance(result.power, pd.DataFrame)
    assert len(result.timeline) == result.extra["nodes"]         # one row per played node
    assert list(result.memory.stage) == list(range(2))            # pp=2: one row per stage
    assert result.memory_peak_gib == pytest.approx(result.memory.total_gib.max())


def test_summary_records_equal_the_frame(small_scenario):
    fresh = simulate(small_scenario, band=False)        # records read before the frame exists
    records = fresh.summary()["memory_per_stage"]
    assert isinstance(fresh.__dict__["_memory"], Columns)
    assert records == fresh.memory.to_dict("records")
    assert all(type(v) in (int, float) for r in records for v in r.values())


def test_power_curve_is_each_ranks_activity(result):
    """The power table is, per simulated rank, idle + dynamic x activity over the rank's
    rows (the curve rank_curve gives on those rows alone): checked rank by rank with a
    pandas groupby, as the table was built before."""
    tl, power = result.timeline, result.power
    assert sorted(power["rank"].unique()) == sorted(tl["rank"].unique())
    for rank, rows in tl.groupby("rank"):
        got = power[power["rank"] == rank]
        times, _ = rank_curve(rows["start"].to_numpy(), rows["end"].to_numpy(),
                              np.zeros(len(rows)), result.iteration_time_s)
        np.testing.assert_array_equal(got["t_s"].to_numpy(), times[:-1])
        assert (got["watts"] > 0).all()


def test_a_frame_given_directly_is_kept():
    mem = pd.DataFrame([{"stage": 0, "total_gib": 1.0}])
    res = SimResult(name="x", fidelity="analytical", iteration_time_s=1.0, tokens_per_s=1.0,
                    tflops_per_gpu=1.0, mfu=0.5, hfu=0.5, memory_peak_gib=1.0, breakdown={},
                    memory=mem, timeline=Columns({"id": [0], "rank": [0]}), world_size=1)
    assert res.memory is mem
    assert res.memory_records() == [{"stage": 0, "total_gib": 1.0}]
    assert res.power is None
    assert list(res.timeline.columns) == ["id", "rank"]


def test_simulate_command_does_not_import_pandas(tmp_path, small_scenario):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small_scenario.model_dump(mode="json", exclude_none=True)))
    code = ("import runpy, sys\n"
            f"sys.argv = ['clustersim', 'simulate', {str(path)!r}]\n"
            "try:\n    runpy.run_module('sim.cli.main', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print('PANDAS', 'pandas' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "iteration time" in out.stdout
    assert out.stdout.strip().endswith("PANDAS False")
