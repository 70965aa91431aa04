"""Explorer fixes: Markdown-safe errors, whole legends, categorical tp/pp, a true Pareto front,
a replay bar that sums to the iteration, readable numbers in Compare."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("streamlit")
from app import core  # noqa: E402
from sim.sweep import summary  # noqa: E402
from tests.app.test_pages import SMALL, open_page  # noqa: E402


def charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def values(arr) -> list:
    """A plotly array: a plain list, or base64 typed-array data ({'dtype', 'bdata'})."""
    if isinstance(arr, dict):
        return np.frombuffer(base64.b64decode(arr["bdata"]), dtype=arr["dtype"]).tolist()
    return list(arr)


def unescape(markdown: str) -> str:
    return re.sub(r"\\(.)", r"\1", markdown)


def test_plain_keeps_markdown_characters():
    text = "tp*pp = 3*8 must divide gpus_total [x] $5 <b>"
    assert unescape(core.plain(text)) == text
    assert "*" not in core.plain(text).replace("\\*", "")


def test_scenario_error_shows_the_stars():
    at = open_page("Scenario")
    at.number_input(key="w_tp").set_value(3).run()
    body = next(e.value for e in at.error if "Invalid scenario" in e.value)
    assert "tp*pp = 3*2 = 6" in unescape(body) and "\\*" in body


def test_results_legend_lists_every_part_below_the_bar():
    at = open_page("Results")
    spec = next(s for s in charts(at) if s["layout"]["title"]["text"].startswith("Breakdown"))
    assert spec["layout"]["legend"]["orientation"] == "h"
    assert len({t["name"] for t in spec["data"]}) == len(spec["data"]) > 1


def test_sweep_heatmap_axes_are_categories_and_front_is_pareto():
    at = open_page("Sweep")
    at.multiselect(key="sw_tp").set_value([1, 2, 4])
    at.multiselect(key="sw_pp").set_value([1, 2])
    at.multiselect(key="sw_nodes").set_value([1, 2, 4])
    at.button[0].click().run()
    assert not at.exception
    specs = charts(at)
    heat = next(s for s in specs if s["data"][0]["type"] == "heatmap")
    assert heat["layout"]["xaxis"]["type"] == heat["layout"]["yaxis"]["type"] == "category"
    assert sorted(values(heat["data"][0]["y"])) == ["1", "2", "4"]
    frame = at.session_state["sweep_df"]
    ok = frame[frame.status == "ok"]
    pareto = next(s for s in specs if s["layout"]["title"]["text"].startswith("Pareto front: tokens/s vs GPUs"))
    front = next(t for t in pareto["data"] if t["name"] == "Pareto front")
    dominated = next(t for t in pareto["data"] if t["name"] == "dominated plans")
    fx, fy = values(front["x"]), values(front["y"])
    assert len(fx) == len(summary.pareto(frame, "gpus")) < len(ok)
    assert len(fx) + len(values(dominated["x"])) == len(ok)
    for g, rate in zip(fx, fy, strict=True):                       # nobody beats a front point
        assert not ((ok.gpus <= g) & (ok.tokens_per_s > rate)).any()


def test_replay_bar_sums_to_the_iteration():
    at = open_page("Trace replay", rp_trace="h100_gpt_1p3b_s4k.json.gz")
    assert not at.exception
    spec = next(s for s in charts(at) if "sums to the iteration" in s["layout"]["title"]["text"])
    total: dict[str, float] = {}
    for t in spec["data"]:
        for x, run in zip(values(t["x"]), values(t["y"]), strict=True):
            total[run] = total.get(run, 0.0) + x
    from app.views.replay import breakdown
    from tests.app.test_pages import metric
    assert set(total) == {"replayed", "whatif"}
    assert total["replayed"] == pytest.approx(float(metric(at, "Replayed iteration (ms)")), abs=2e-3)
    assert total["whatif"] == pytest.approx(float(metric(at, "What-if iteration (ms)")), abs=2e-3)
    rows = breakdown({"breakdown": {"replayed": {"gemm_s": 0.3, "nccl_s": 0.2, "elementwise_s": 0.1,
                                                 "exposed_comm_s": 0.05, "gpu_idle_s": 0.15}},
                      "replayed_iteration_s": 0.5})
    assert rows.ms.sum() == pytest.approx(500.0)
    assert rows.set_index("part").ms["gemm"] == pytest.approx(300 * 0.3 / 0.4)


def test_compare_shows_readable_numbers():
    assert core.number(443500.0) == "443,500"
    assert core.number(4.435) == "4.435" and core.number(0.012345) == "0.01235"
    assert core.number(float("nan")) == "" and core.number(2.5e20) == "2.5e+20"
    at = open_page("Compare", SMALL)
    assert not at.exception
    df = at.dataframe[0].value
    assert isinstance(df, pd.DataFrame) and df.loc["gpus", "base"] == 16
