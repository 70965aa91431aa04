"""The hybrid Mamba / attention MoE rows (hybrid_moe_training.csv): the published Megatron-Bridge
Nemotron 3 tables as parsed, the recipe settings of a few rows against the recipe source, and
the skip reasons while a model has no preset."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from calibration import hybrid_recipes, validate_hybrid
from calibration.hybrid_recipes import ALL4, NORM_MOE_ACT, hybrid_recipe, unmodelled
from workloads.host_launch import SCOPES
from workloads.model import presets


@pytest.fixture(scope="module")
def df():
    return validate_hybrid.rows()


def _row(df, source, arch, gpu, precision):
    got = df[(df.source_id == source) & (df.arch_id == arch) & (df.gpu_type == gpu)
             & (df.precision == precision)]
    assert len(got) == 1
    return next(got.itertuples())


def test_csv_parses_with_the_moe_columns(df):
    from calibration.validate_moe import rows as moe_rows
    assert list(df.columns) == list(moe_rows().columns)
    assert len(df) == 53
    assert set(df.arch_id) == {"nemotron-3-nano", "nemotron-3.5-lightning", "nemotron-3-super",
                               "nemotron-3-ultra"}


def test_row_count_per_model_and_release_matches_the_published_tables(df):
    # Counted in docs/performance-summary.md (26.08) and performance-summary-archive.md
    # at Megatron-Bridge 067f987df03b: one row per table line.
    want = {("MB-PERF-26.08", "nemotron-3-nano"): 1, ("MB-PERF-26.08", "nemotron-3.5-lightning"): 1,
            ("MB-PERF-26.08", "nemotron-3-super"): 4, ("MB-PERF-26.08", "nemotron-3-ultra"): 2,
            ("MB-PERF-26.06.01", "nemotron-3-nano"): 2, ("MB-PERF-26.06.01", "nemotron-3-super"): 4,
            ("MB-PERF-26.06", "nemotron-3-nano"): 4, ("MB-PERF-26.06", "nemotron-3-super"): 6,
            ("MB-PERF-26.04.01", "nemotron-3-nano"): 5, ("MB-PERF-26.04.01", "nemotron-3-super"): 8,
            ("MB-PERF-26.04", "nemotron-3-nano"): 4, ("MB-PERF-26.04", "nemotron-3-super"): 8,
            ("MB-PERF-26.02.01", "nemotron-3-nano"): 4}
    assert df.groupby(["source_id", "arch_id"]).size().to_dict() == want


@pytest.mark.parametrize("source, arch, gpu, precision, plan, tok, tflops", [
    # (GPUs, GBS, MBS, TP, EP) and the two published figures, read off the markdown by hand
    ("MB-PERF-26.08", "nemotron-3-super", "GB300", "NVFP4", ("64", "512", "1", "1", "64"), "10240", "864"),
    ("MB-PERF-26.08", "nemotron-3-ultra", "GB200", "MXFP8", ("256", "256", "1", "2", "64"), "2528", "923"),
    ("MB-PERF-26.06", "nemotron-3-nano", "H100", "FP8", ("16", "1024", "1", "1", "8"), "14719", "328"),
    ("MB-PERF-26.04.01", "nemotron-3-super", "B200", "NVFP4", ("64", "512", "1", "2", "64"), "5632", "475"),
    ("MB-PERF-26.02.01", "nemotron-3-nano", "GB200", "MXFP8", ("8", "512", "2", "1", "8"), "33934", "756"),
])
def test_spot_values(df, source, arch, gpu, precision, plan, tok, tflops):
    r = _row(df, source, arch, gpu, precision)
    assert (r.num_gpus, r.global_batch_seqs, r.micro_batch, r.tp, r.ep) == plan
    assert (r.throughput_tokens_per_s_per_gpu, r.model_tflops_per_gpu) == (tok, tflops)
    assert r.seq_len == "8192"


def test_revised_and_footnoted_rows_keep_their_history(df):
    r = _row(df, "MB-PERF-26.04.01", "nemotron-3-super", "B300", "MXFP8")
    assert r.throughput_tokens_per_s_per_gpu == "7296" and "first published as 7424" in r.notes
    assert "param gather" in _row(df, "MB-PERF-26.04.01", "nemotron-3-super", "B200", "NVFP4").notes


def test_recipe_lookups_match_the_recipe_source(df):
    # v0.6.0 perf_recipes/nemotronh/gb300/nemotronh.py: Nano sets moe_hybridep_num_sms = 16
    # after _benchmark_common; v0.5.1: _set_common_perf_overrides' 32 needs the hybridep backend,
    # which the Nano config sets after it (the library recipe's deepep, 16 SMs, until then);
    # Super's library recipe names hybridep, so 32.
    nano_2608 = hybrid_recipe(_row(df, "MB-PERF-26.08", "nemotron-3-nano", "GB300", "MXFP8"))
    nano_2606 = hybrid_recipe(_row(df, "MB-PERF-26.06", "nemotron-3-nano", "GB300", "MXFP8"))
    super_2606 = hybrid_recipe(_row(df, "MB-PERF-26.06", "nemotron-3-super", "GB300", "MXFP8"))
    assert (nano_2608["hybridep_sms"], nano_2606["hybridep_sms"], super_2606["hybridep_sms"]) == (16, 16, 32)
    assert nano_2608["cuda_graphs"] == ALL4 and nano_2608["mtp_layers"] == 0
    # v0.4.2 nemotron_3_workload_base_configs.py BASE_NEMOTRON_3_SUPER_CONFIG_B200: no graphs,
    # recompute [moe_act, layernorm]; the library recipe's mtp_num_layers = 2.
    b200 = hybrid_recipe(_row(df, "MB-PERF-26.04.01", "nemotron-3-super", "B200", "MXFP8"))
    assert (b200["cuda_graphs"], b200["recompute_modules"], b200["mtp_layers"]) == ((), NORM_MOE_ACT, 2)
    # NEMOTRON_3_NANO_PRETRAIN_CONFIG_H100_FP8_CS_V1: graphs [mamba], four recompute modules.
    h100 = hybrid_recipe(_row(df, "MB-PERF-26.04", "nemotron-3-nano", "H100", "FP8"))
    assert h100["cuda_graphs"] == ("mamba",)
    assert h100["recompute_modules"] == ("moe", "layernorm", "core_attn", "moe_act")
    assert unmodelled(h100) == []            # every module is priced (workload.recompute_modules)
    ultra = hybrid_recipe(_row(df, "MB-PERF-26.08", "nemotron-3-ultra", "GB300", "MXFP8"))
    assert ultra["fsdp"] == 64 and ultra["router_fusion"]
    assert unmodelled(ultra) == ["activation offloading of ['fused_group_mlp']"]
    assert unmodelled(h100 | {"recompute_modules": ("moe", "mhc")}) == ["recompute_modules ['mhc']"]


def test_every_row_has_a_recipe(df):
    missing = [r.Index for r in df.itertuples() if hybrid_recipe(r) is None]
    assert missing == []


def test_rows_without_a_preset_are_skipped_with_the_reason(df):
    r = _row(df, "MB-PERF-26.08", "nemotron-3-super", "GB300", "MXFP8")
    assert validate_hybrid.skip_reason(r, zoo={}) == "no preset nemotron-3-super in the model zoo"
    zoo = presets()
    simulated = []

    def predict(sc):
        model = sc["workload"]["model"]          # a preset name, or a preset's fields inline
        assert not isinstance(model, str) or model in zoo, f"{model}: no preset, not simulated"
        simulated.append(model)
        return 1.0, {}

    out = validate_hybrid.run(predict)
    for row in out.itertuples():
        if row.model not in zoo:
            assert row.skipped == f"no preset {row.model} in the model zoo"
    assert len(simulated) == int((out.skipped == "").sum())


def test_with_a_preset_a_row_is_skipped_for_what_its_recipe_needs(df):
    zoo = {"nemotron-3-nano": None, "nemotron-3-super": None}
    assert validate_hybrid.skip_reason(_row(df, "MB-PERF-26.06", "nemotron-3-nano", "H100", "FP8"), zoo) is None
    why = validate_hybrid.skip_reason(_row(df, "MB-PERF-26.06", "nemotron-3-super", "GB300", "NVFP4"), zoo)
    assert "te_quant.cfg" in why
    assert validate_hybrid.skip_reason(_row(df, "MB-PERF-26.06", "nemotron-3-super", "GB300", "MXFP8"), zoo) is None


def test_scenario_of_a_row_follows_its_recipe(df, monkeypatch):
    """With a stand-in preset (Qwen3-30B-A3B's shape under the Nano's name) the 26.08 Nano
    GB300 row builds a scenario the parser accepts, with its recipe's settings."""
    from sim.scenario import parse
    stand_in = presets()["qwen3-30b-a3b"]
    monkeypatch.setattr(validate_hybrid, "presets", lambda: {"nemotron-3-nano": stand_in})
    sc = validate_hybrid.scenario_for(_row(df, "MB-PERF-26.08", "nemotron-3-nano", "GB300", "MXFP8"))
    w = sc["workload"]
    assert w["moe"] == {"dispatcher": "hybridep", "overlap": False, "hybridep_sms": 16, "router_fusion": False}
    assert w["fp8"] == {"recipe": "mxfp8"} and w["micro_batch"] == 4 and w["seq_len"] == 8192
    assert w["cuda_graphs"] == [s for s in ALL4 if s in SCOPES]
    assert sc["cluster"]["nodes"] == 2 and sc["cluster"]["system"]["scale_up"]["domain_gpus"] == 64
    parse(sc, sc["name"])


def test_recipe_table_keys_are_rows_of_the_csv(df):
    keys = {(r.arch_id, r.gpu_type, hybrid_recipes.precision_key(r)) for r in df.itertuples()}
    assert set(hybrid_recipes.HYBRID_RECIPES) == keys


def test_release_of_a_row():
    assert hybrid_recipes.release(SimpleNamespace(source_id="MB-PERF-26.04.01")) == (26, 4, 1)


def test_a_recompute_list_without_a_mode_is_passed_as_recompute_modules(df):
    """The H100 Nano recipe's [moe, layernorm, core_attn, moe_act] names no mode: the
    scenario carries the list; the Super B200 [moe_act, layernorm] keeps its mode."""
    from sim.scenario import parse
    h100 = validate_hybrid.scenario_for(_row(df, "MB-PERF-26.06", "nemotron-3-nano", "H100", "FP8"))
    assert h100["workload"]["recompute_modules"] == ["moe", "layernorm", "core_attn", "moe_act"]
    assert "recompute" not in h100["workload"]
    parse(h100, h100["name"])
    b200 = validate_hybrid.scenario_for(_row(df, "MB-PERF-26.04.01", "nemotron-3-super", "B200", "MXFP8"))
    assert b200["workload"]["recompute"] == "norm_moe_act"
