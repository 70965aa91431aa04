"""The accuracy dashboard (clustersim validate all): discovery, errors, leave-one-suite-out
bands and their coverage, outputs. Hand-computed values on small synthetic tables."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from calibration import dashboard
from hw_models.errors import ClusterSimError
from hw_models.profile import ResidualBand
from sim.cli.main import app


def table(rows):
    return pd.DataFrame([{"suite": s, "name": f"{s}{i}", "predicted": p, "published": q,
                          "kind": k, "unit": "", "low": np.nan, "high": np.nan}
                         for i, (s, p, q, k) in enumerate(rows)]).assign(
        error_pct=lambda d: 100 * (d.predicted / d.published - 1))


def test_builtin_suites_are_discovered():
    assert {"sc21", "korthikanti", "nccl", "inference"} <= set(dashboard.discover())


def test_two_suites_with_one_name_are_refused(tmp_path, monkeypatch):
    pkg = tmp_path / "fakesuites"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for f in ("validate_a", "validate_b"):
        (pkg / f"{f}.py").write_text("SUITE = 'same'\ndef dashboard_rows():\n    return []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import fakesuites
    with pytest.raises(ClusterSimError, match="'same' is defined twice"):
        dashboard.discover(fakesuites)


def test_residual_sign_time_and_rate():
    df = table([("a", 9.0, 10.0, "time"), ("a", 110.0, 100.0, "rate")])
    # both predictions are too fast: published time / predicted time > 1
    assert dashboard.log_residual(df) == pytest.approx([math.log(10 / 9), math.log(1.1)])


def test_weighted_quantile_and_equal_suite_weights():
    w = dashboard.suite_weights(np.array(["a", "a", "a", "b"]))
    assert w == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1.0])
    # two equally weighted points: midpoint rule puts them at the 25th and 75th percentile
    assert dashboard.weighted_quantiles(np.array([0.0, 1.0]), np.ones(2), [0.5]) == [0.5]


def test_leave_one_suite_out_never_judges_a_suite_by_itself():
    # suite a misses by 10% on every row, suite b is exact: a's band comes from b's
    # residuals (zero width), so a is never covered; b's band is +-ln(1.1) wide.
    df = table([("a", 1.0, 1.1, "time")] * 4 + [("b", 1.0, 1.0, "time")] * 4)
    out = dashboard.apply_bands(df)
    assert not out[out.suite == "a"].covered.any()
    assert out[out.suite == "b"].covered.all()
    b = out[out.suite == "b"].iloc[0]
    assert (b.low, b.high) == pytest.approx((1 / 1.1, 1.1))


def test_rate_band_is_inverted():
    # TFLOP/s row: 110 predicted vs 100 published; time band x/ 1.2 from the other suite
    df = table([("a", 110.0, 100.0, "rate"), ("b", 1.0, 1.2, "time")])
    a = dashboard.apply_bands(df).iloc[0]
    assert (a.low, a.high) == pytest.approx((110 / 1.2, 110 * 1.2))
    assert a.covered


def test_summary_and_coverage_figures():
    df = table([("a", 1.0, 1.0, "time"), ("a", 1.2, 1.0, "time"), ("a", 0.9, 1.0, "time"),
                ("b", 1.0, 1.0, "time")])
    res = dashboard.result_of(df)
    s = res["suites"]["a"]
    assert s["median_abs_error_pct"] == 10.0
    assert s["worst_error_pct"] == 20.0 and s["worst_row"] == "a1"
    assert res["coverage"]["rows"] == pytest.approx(
        np.mean([r["covered"] for r in res["rows"]]), abs=1e-3)
    assert set(res["rows"][0]) >= {"suite", "name", "predicted", "published", "error_pct",
                                   "covered"}


def test_readme_section_is_rewritten_between_markers(tmp_path):
    res = dashboard.result_of(table([("a", 1.0, 1.0, "time"), ("b", 1.0, 1.1, "time")]))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{dashboard.README_BEGIN}\nold\n{dashboard.README_END}\nrest\n")
    dashboard.rewrite_readme(readme, res)
    text = readme.read_text()
    assert "old" not in text and "| a | 1 |" in text
    assert text.startswith("intro\n") and text.endswith("rest\n")
    readme.write_text("no markers")
    with pytest.raises(ClusterSimError, match="accuracy:begin"):
        dashboard.rewrite_readme(readme, res)


def test_residual_band_widens_both_ends():
    rb = ResidualBand(level=0.8, log_half_width=math.log(1.1), rows=10)
    assert rb.widen(2.0, 3.0) == pytest.approx((2.0 / 1.1, 3.3))


def test_cli_json_contract():
    r = CliRunner().invoke(app, ["validate", "all", "--suite", "korthikanti", "--format", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert len(data["rows"]) == 15
    assert {"suite", "name", "predicted", "published", "error_pct", "covered"} <= set(data["rows"][0])
    k = data["suites"]["korthikanti"]
    assert k["median_abs_error_pct"] <= 5 and k["rows"] == 15


def test_cli_unknown_suite_is_one_line_exit_2():
    r = CliRunner().invoke(app, ["validate", "all", "--suite", "nope"])
    assert r.exit_code == 2
    assert "unknown suite(s) nope; allowed:" in r.output and "Traceback" not in r.output


def test_minimal_rows_get_defaults():
    suite = dashboard.Suite("x", "mod", lambda: [{"name": "r", "predicted": 2.0, "published": 1.0}])
    df = dashboard.collect([suite])
    assert df.iloc[0].error_pct == 100.0 and df.iloc[0].kind == "time"


def test_simulate_band_is_the_bootstrap_band_widened_by_the_stored_residuals(small_scenario):
    from hw_models.profile import load_residual_band
    from sim.simulate import simulate
    rb = load_residual_band()
    assert rb is not None and 0 < rb.log_half_width < 0.5
    bare = simulate(small_scenario, residuals=False).band["iteration_time_s"]
    wide = simulate(small_scenario).band["iteration_time_s"]
    f = math.exp(rb.log_half_width)
    assert wide == pytest.approx((bare[0] / f, bare[1] * f))


def test_groups_get_their_own_figures():
    df = table([("a", 1.1, 1.0, "time"), ("a", 1.0, 1.0, "time"), ("a", 0.5, 1.0, "time"),
                ("b", 1.0, 1.0, "time")])
    df["group"] = ["x", "x", "y", None]
    res = dashboard.result_of(df)
    groups = res["suites"]["a"]["groups"]
    assert set(groups) == {"x", "y"} and "groups" not in res["suites"]["b"]
    assert groups["x"]["rows"] == 2 and groups["x"]["median_abs_error_pct"] == 5.0
    # geometric-mean |error| over the group: exp(mean |ln(pred/pub)|) - 1
    assert groups["x"]["geomean_abs_error_pct"] == pytest.approx(
        100 * (math.exp(math.log(1.1) / 2) - 1), abs=0.05)
    assert "| a: y | 1 | 50.0% |" in dashboard.summary_markdown(res)
