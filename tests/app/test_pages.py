"""Every explorer page under streamlit's AppTest: renders, no exception, and changing a
widget changes the number shown. A small scenario keeps each run well under a second."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("streamlit")
import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from sim import scenario as scenario_mod  # noqa: E402
from sim.simulate import simulate  # noqa: E402

ENTRY = str(Path(__file__).resolve().parents[2] / "app" / "explorer.py")
SMALL = {"name": "small", "cluster": {"system": "dgx-a100", "nodes": 2},
         "workload": {"model": "megatron-7.5b", "global_batch": 32, "micro_batch": 1,
                      "precision": "bf16", "parallel": {"tp": 4, "pp": 2},
                      "recompute": "selective"}}
TINY_TRACE = "mi250_minitoy_train.json.gz"      # 7 KB, replays in ~0.1 s
TINY_SOURCE = "mi300x-8"       # a source picked by hand (the trace's own GPU is mi250-8)


def open_page(title: str, scenario: dict | None = None, **state) -> AppTest:
    at = AppTest.from_file(ENTRY, default_timeout=60)
    at.session_state["scenario"] = copy.deepcopy(scenario or SMALL)
    at.session_state["page"] = title
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_scenario_page_nodes_change_throughput_and_errors_inline():
    at = open_page("Scenario")
    before = metric(at, "Tokens/s")
    assert metric(at, "GPUs") == "16"
    at.number_input(key="w_nodes").set_value(4).run()
    assert not at.exception
    assert metric(at, "GPUs") == "32" and metric(at, "Tokens/s") != before
    # tp=3 does not divide the 32 heads: explained inline, no traceback.
    at.number_input(key="w_tp").set_value(3).run()
    assert not at.exception
    assert any("Invalid scenario" in e.value for e in at.error)


def test_scenario_page_fidelity_selector_reruns_with_flow_model():
    at = open_page("Scenario")
    analytical = metric(at, "Iteration time (s)")
    at.selectbox(key="w_fidelity").set_value("flow").run()
    assert not at.exception
    assert at.session_state["scenario"]["sim"]["fidelity"] == "flow"
    # The page shows what the flow engine itself gives for this scenario, which is
    # another answer than the closed form (links shared between concurrent transfers,
    # NCCL's tuner choosing per size).
    flow = copy.deepcopy(SMALL)
    flow["sim"] = {"fidelity": "flow"}
    expected = simulate(scenario_mod.parse(flow, "test"), band=False).iteration_time_s
    shown = float(metric(at, "Iteration time (s)"))
    assert shown == pytest.approx(expected, abs=1e-3) and shown != float(analytical)
    at.session_state["page"] = "Results"
    at.run()
    assert any("fidelity flow" in c.value for c in at.caption)


def test_results_page_shows_breakdown_downloads_and_reacts_to_scenario():
    at = open_page("Results")
    t1 = metric(at, "Iteration time (s)")
    # the built-in profile's bootstrap gives a band, shown in full under the metrics
    assert any(c.value.startswith(f"Iteration time {t1} [") for c in at.caption)
    assert len(at.get("plotly_chart")) == 3           # breakdown, memory, timeline
    assert len(at.get("download_button")) == 2
    at.session_state["scenario"]["workload"]["recompute"] = "full"
    at.run()
    assert not at.exception and metric(at, "Iteration time (s)") != t1


def test_results_page_shows_prediction_interval(monkeypatch):
    from app import core
    real = core.simulate

    def banded(sc):
        res = real(sc)
        res.band = {"iteration_s": (0.9 * res.iteration_time_s, 1.2 * res.iteration_time_s)}
        return res
    monkeypatch.setattr(core, "simulate", banded)
    at = open_page("Results", SMALL | {"name": "small-banded"})   # a fresh cache key
    value = metric(at, "Iteration time (s)")             # the value alone: the box cuts long text
    caption = next(c.value for c in at.caption if c.value.startswith("Iteration time "))
    shown, low, high = caption.split(" s:")[0].removeprefix("Iteration time ").replace(
        "[", "").replace("]", "").replace(",", "").split()
    assert shown == value
    assert float(low) == pytest.approx(0.9 * float(value), rel=2e-3)
    assert float(high) == pytest.approx(1.2 * float(value), rel=2e-3)


def test_compare_page_variant_changes_table():
    at = open_page("Compare")
    df = at.dataframe[0].value
    assert "base" in df.columns and "Δ% workload.recompute=full" in df.columns
    # Full recompute redoes the forward pass: the iteration gets slower.
    assert df.loc["iteration_time_s", "Δ% workload.recompute=full"] > 0
    at.text_area(key="cmp_variants").set_value("cluster.nodes=4").run()
    df = at.dataframe[0].value
    assert list(df.columns) == ["base", "cluster.nodes=4", "Δ% cluster.nodes=4"]
    assert df.loc["gpus", "cluster.nodes=4"] == 32


def test_sweep_page_calls_the_sweep_engine_and_loads_plan(tmp_path):
    from app.views.sweep import sweep_file
    from sim.sweep import run, spec
    at = open_page("Sweep")
    at.multiselect(key="sw_tp").set_value([2, 4])
    at.multiselect(key="sw_pp").set_value([1, 2])
    at.button[0].click().run()                      # the form's "Run sweep"
    assert not at.exception
    df = at.session_state["sweep_df"]
    assert sorted(zip(df.tp, df.pp, strict=True)) == [(2, 1), (2, 2), (4, 1), (4, 2)]
    # Same rows as `clustersim sweep` on the same sweep file.
    out = tmp_path / "s.parquet"
    run.run(spec.parse(sweep_file(SMALL, False, [2, 4], [1, 2], [2], ["dgx-a100"])),
            run.Options(out=str(out), progress=False))
    cli = pd.read_parquet(out)
    assert cli.tokens_per_s.tolist() == pytest.approx(df.tokens_per_s.tolist(), nan_ok=True)
    # heatmap, Pareto vs GPUs, Pareto vs USD/hour (dgx-a100 has a list price)
    assert len(at.get("plotly_chart")) == 3
    pick = at.selectbox(key="sw_pick")
    pick.set_value(pick.options[-1])
    at.button(key="sw_load").click().run()
    plan = at.session_state["scenario"]["workload"]["parallel"]
    worst = df[df.status == "ok"].sort_values("tokens_per_s").iloc[0]
    assert (plan["tp"], plan["pp"]) == (worst.tp, worst.pp) and "dp" not in plan
    at.session_state["page"] = "Scenario"           # the loaded plan, on the Scenario page
    at.run()
    assert not at.exception and at.number_input(key="w_tp").value == worst.tp
    assert at.number_input(key="w_nodes").value == 2
    # plans: auto searches micro batch, recompute, ... too: more configurations.
    at.session_state["page"] = "Sweep"
    at.run()
    at.radio(key="sw_mode").set_value(at.radio(key="sw_mode").options[1])
    at.button[0].click().run()
    assert not at.exception and len(at.session_state["sweep_df"]) > len(df)


def test_collectives_page_uses_fabric_model_and_overlays_references():
    from sim.network.nccl_tests import sweep
    at = open_page("Collectives")                   # dgx-a100, 1 node, 8 GPUs, all_reduce
    spec = at.get("plotly_chart")[0].proto.spec
    assert "measured: Azure A100-80GB 8 GPU" in spec and "measured: echo A100-40GB 8 GPU" in spec
    assert "measured: Vidur DGX A100 8 GPU" in spec
    auto = metric(at, "Modelled busbw at 1 GiB (GB/s)")
    cli = sweep("dgx-a100", 1, 8, "all_reduce", None, None, 2**30, 2**30)
    assert auto == f"{cli.busbw_gb_s.iloc[0]:.1f}"     # same as `clustersim collective`
    at.selectbox(key="co_proto").set_value("LL").run()
    assert not at.exception and metric(at, "Modelled busbw at 1 GiB (GB/s)") != auto
    at.selectbox(key="co_algo").set_value("nvls").run()   # no NVLS on A100: inline error
    assert not at.exception and at.error


def test_collectives_page_overlays_send_recv_measurements():
    from app.views.collectives import references
    refs = dict(references("dgx-h100", "sendrecv", 2))
    (data,) = refs.values()
    # sendrecv: busbw = algbw = S / t (nccl-tests); 64 MiB in 193 us on the DGX H100.
    row = data[data.size_bytes == 64 << 20].iloc[0]
    assert row.busbw_gb_s == pytest.approx((64 << 20) / 193e3, rel=1e-3)
    assert references("dgx-h100", "sendrecv", 4) == []


def test_inference_page_policy_and_rate_change_metrics():
    at = open_page("Inference")
    assert metric(at, "GPUs") == "2"
    ttft = metric(at, "TTFT p50 / p99 (ms)")
    tput = metric(at, "Throughput (tokens/s)")
    assert len(at.get("plotly_chart")) == 2           # histogram, iteration timeline
    at.selectbox(key="in_policy").set_value("sarathi").run()
    assert not at.exception and metric(at, "TTFT p50 / p99 (ms)") != ttft
    at.number_input(key="in_rate").set_value(40.0).run()
    # 100 requests arrive 4x faster: more output tokens per second of makespan.
    assert float(metric(at, "Throughput (tokens/s)").replace(",", "")) > float(tput.replace(",", ""))
    at.number_input(key="in_replicas").set_value(9).run()       # 9 GPUs on one 8-GPU node
    assert not at.exception and "9 GPUs" in at.error[0].value


def test_replay_page_target_system_changes_whatif_kernels():
    at = open_page("Trace replay", rp_trace=TINY_TRACE, rp_source=TINY_SOURCE)
    assert metric(at, "Replay error") == "+0.000%"
    kernels = at.dataframe[0].value.set_index("class")
    assert len(at.get("download_button")) == 1
    at.selectbox(key="rp_target").set_value("dgx-b200").run()
    assert not at.exception
    faster = at.dataframe[0].value.set_index("class")
    assert faster.loc["gemm", "whatif_s_per_iteration"] < kernels.loc["gemm", "whatif_s_per_iteration"]


ENGINES = {"simulate": "simulate", "collective": "collective_sweep", "replay": "replay_run"}


@pytest.mark.parametrize("page, state", [
    ("Scenario", {}), ("Results", {}), ("Compare", {}), ("Collectives", {}),
    ("Inference", {}), ("Trace replay", {"rp_trace": TINY_TRACE, "rp_source": TINY_SOURCE})])
def test_every_page_answers_a_repeated_question_from_the_cache(monkeypatch, page, state):
    from app import core
    calls = []
    for name in ENGINES.values():
        real = getattr(core, name)
        monkeypatch.setattr(core, name, lambda *a, _r=real, **k: calls.append(1) or _r(*a, **k))
    st.cache_data.clear()
    at = open_page(page, **state)
    first = len(calls)
    at.run()
    assert not at.exception and first > 0 and len(calls) == first


def test_sweep_page_repeated_sweep_comes_from_the_cache(monkeypatch):
    from app import core
    calls = []
    real = core.sweep_run.run
    monkeypatch.setattr(core.sweep_run, "run", lambda *a, **k: calls.append(1) or real(*a, **k))
    st.cache_data.clear()
    at = open_page("Sweep")
    at.multiselect(key="sw_tp").set_value([4])
    at.multiselect(key="sw_pp").set_value([2])
    at.button[0].click().run()
    at.button[0].click().run()
    assert not at.exception and len(calls) == 1


def test_inference_page_starts_from_a_serving_scenario_file(tmp_path, monkeypatch):
    import yaml

    from app import core
    data = yaml.safe_load((Path(ENTRY).parents[1] / "examples/inference_llama3_70b.yaml").read_text())
    data["workload"]["requests"]["count"] = 100
    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv(core.SCENARIO_ENV, str(path))
    at = open_page("Inference")
    assert metric(at, "GPUs") == "16"                                   # 2 DGX H100 nodes
    assert at.session_state["in_model"] == "llama3-70b" and at.session_state["in_tp"] == 4
    assert at.session_state["in_lognormal"] is True                     # prompt lengths
    kept = at.session_state["inference_scenario"]["workload"]
    assert kept["scheduler"]["max_batch"] == 256 and kept["kv_cache"]["block_size"] == 16
