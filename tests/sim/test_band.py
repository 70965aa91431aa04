"""Prediction bands: simulate() re-plays the graph at the profile's bootstrap corners."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from hw_models.profile import band_profiles, load_builtin
from sim.cli.main import app
from sim.simulate import simulate


def test_band_brackets_point_and_derived_metrics(small_scenario):
    r = simulate(small_scenario)                  # a100 built-in profile: has uncertainty
    lo, hi = r.band["iteration_time_s"]
    assert lo <= r.iteration_time_s <= hi
    assert lo < hi                                # the A100 fits have a real bootstrap spread
    tlo, thi = r.band["tokens_per_s"]
    assert tlo == pytest.approx(32 * 2048 / hi) and thi == pytest.approx(32 * 2048 / lo)
    assert r.band["mfu"][0] <= r.mfu <= r.band["mfu"][1]


@pytest.mark.parametrize("nccl_sms", [False, True])
def test_band_equals_runs_on_the_corner_profiles(small_scenario, nccl_sms):
    # Independent check: simulate() on each corner profile gives the band's ends. With
    # NCCL's SMs shared, the corners keep the nominal play's slowdown of each node scaled
    # (sim/band.py), not re-played: within 0.5% here.
    small_scenario.sim.nccl_sms = nccl_sms
    fast, slow = band_profiles(load_builtin("a100"))
    r = simulate(small_scenario, residuals=False)     # the bare bootstrap band
    ends = sorted(simulate(small_scenario, p, band=False).iteration_time_s for p in (fast, slow))
    assert r.band["iteration_time_s"] == pytest.approx(tuple(ends), rel=5e-3 if nccl_sms else 1e-6)


def test_no_uncertainty_no_band(small_scenario, tmp_path):
    data = load_builtin("a100").model_dump(exclude_none=True)
    data["uncertainty"] = {}
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(data))
    sc = small_scenario.model_copy(deep=True)
    sc.cluster.profile = str(path)
    r = simulate(sc)
    assert r.band is None and "band" not in r.summary()
    assert simulate(small_scenario, band=False).band is None


def test_cli_shows_band(small_scenario, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(small_scenario.model_dump(mode="json")))
    out = CliRunner().invoke(app, ["simulate", str(path)])
    assert out.exit_code == 0, out.output
    line = next(ln for ln in out.output.splitlines() if ln.startswith("iteration time"))
    assert "[" in line and "]" in line
    js = CliRunner().invoke(app, ["simulate", str(path), "--format", "json"])
    band = json.loads(js.output)["band"]["iteration_time_s"]
    assert band[0] <= json.loads(js.output)["iteration_time_s"] <= band[1]
