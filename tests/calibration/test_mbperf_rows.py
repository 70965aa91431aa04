"""The DeepSeek-V3 / Kimi K2 / DeepSeek-V4 Flash rows (mbperf_moe_training.csv): the published
Megatron-Bridge tables as parsed, the recipe settings of rows against the recipe source, the
scenario a row runs, and the skip reasons."""

from __future__ import annotations

import pytest

from calibration import validate_mbperf
from calibration.mbperf_recipes import L8, L16, published_plan, recipe, unmodelled


@pytest.fixture(scope="module")
def df():
    return validate_mbperf.rows()


def _row(df, source, arch, gpu, precision, gbs="4096"):
    got = df[(df.source_id == source) & (df.arch_id == arch) & (df.gpu_type == gpu)
             & (df.precision.str.startswith(precision)) & (df.global_batch_seqs == gbs)]
    assert len(got) == 1
    return next(got.itertuples())


def test_csv_parses_with_the_moe_columns(df):
    from calibration.validate_moe import rows as moe_rows
    assert list(df.columns) == list(moe_rows().columns)
    assert len(df) == 38
    assert set(df.arch_id) == {"deepseek-v3", "kimi-k2", "deepseek-v4-flash"}


def test_row_count_per_release_matches_the_published_tables(df):
    # Counted in docs/performance-summary.md (26.08) and performance-summary-archive.md at
    # Megatron-Bridge 067f987df03b: one row per table line.
    want = {("MB-PERF-26.08", "deepseek-v3"): 2, ("MB-PERF-26.08", "deepseek-v4-flash"): 2,
            ("MB-PERF-26.06.01", "deepseek-v3"): 2,
            ("MB-PERF-26.06", "deepseek-v3"): 4, ("MB-PERF-26.06", "kimi-k2"): 1,
            ("MB-PERF-26.04.01", "deepseek-v3"): 4, ("MB-PERF-26.04.01", "kimi-k2"): 1,
            ("MB-PERF-26.04", "deepseek-v3"): 4, ("MB-PERF-26.04", "kimi-k2"): 1,
            ("MB-PERF-26.02.01", "deepseek-v3"): 4, ("MB-PERF-26.02.01", "kimi-k2"): 1,
            ("MB-PERF-26.02", "deepseek-v3"): 4,
            ("MB-PERF-25.11", "deepseek-v3"): 5, ("MB-PERF-25.09", "deepseek-v3"): 3}
    assert df.groupby(["source_id", "arch_id"]).size().to_dict() == want


@pytest.mark.parametrize("source, arch, gpu, precision, gbs, plan, tok, tflops", [
    # (GPUs, MBS, TP, PP, VP, EP) and the two published figures, read off the markdown by hand
    ("MB-PERF-26.08", "deepseek-v3", "GB300", "MXFP8", "4096", ("256", "1", "1", "2", "8", "32"), "6288", "1635"),
    ("MB-PERF-26.08", "deepseek-v4-flash", "GB200", "MXFP8", "2048", ("128", "1", "1", "1", "n/a", "64"), "7776", "706"),
    ("MB-PERF-26.06", "deepseek-v3", "GB300", "MXFP8", "15360", ("256", "1", "1", "2", "8", "32"), "6422", "1670"),
    ("MB-PERF-26.04.01", "deepseek-v3", "B200", "MXFP8", "4096", ("256", "1", "1", "8", "2", "32"), "3328", "864"),
    ("MB-PERF-26.02.01", "kimi-k2", "GB300", "MXFP8", "4096", ("256", "2", "1", "4", "4", "64"), "5072", "1037"),
    ("MB-PERF-25.11", "deepseek-v3", "GB200", "FP8-MX", "4096", ("256", "1", "1", "8", "4", "32"), "4018", "1003"),
    ("MB-PERF-25.09", "deepseek-v3", "H100", "FP8", "8192", ("1024", "1", "2", "8", "4", "64"), "1297", "338 (330)"),
])
def test_spot_values(df, source, arch, gpu, precision, gbs, plan, tok, tflops):
    r = _row(df, source, arch, gpu, precision, gbs)
    vp = r.vpp if isinstance(r.vpp, str) else "n/a"        # pandas reads "n/a" as NaN
    assert (r.num_gpus, r.micro_batch, r.tp, r.pp, vp, r.ep) == plan
    assert (r.throughput_tokens_per_s_per_gpu, r.model_tflops_per_gpu) == (tok, tflops)
    assert r.seq_len == "4096"


def test_revised_rows_keep_their_history(df):
    r = _row(df, "MB-PERF-26.04.01", "deepseek-v3", "GB300", "MXFP8")
    assert r.throughput_tokens_per_s_per_gpu == "4992" and "first published as 4976" in r.notes
    k = _row(df, "MB-PERF-26.06", "kimi-k2", "GB300", "MXFP8")
    assert k.throughput_tokens_per_s_per_gpu == "5372" and "first published as 5367" in k.notes
    assert "Muon" in k.notes
    assert "w/o MTP" in _row(df, "MB-PERF-25.11", "deepseek-v3", "GB300", "BF16").model


def test_recipe_lookups_match_the_recipe_source(df):
    # v0.4.0 / v0.4.2 DEEPSEEK_V3_PRETRAIN_CONFIG_GB300_V1: MBS 2, pp2 vp8 ep32, no graphs,
    # recompute [mla_up_proj]; v0.5.0 GB300_FP8_MX_V1: MBS 1, full iteration, a2a overlap,
    # fused grouped MLP, FP8 attention, no recompute.
    g2604 = recipe(_row(df, "MB-PERF-26.04", "deepseek-v3", "GB300", "MXFP8"))
    assert (g2604["plan"], g2604["cuda_graphs"], g2604["recompute_modules"]) == ((2, 2, 8, 32), (), ("mla_up_proj",))
    assert g2604["dispatcher"] == "hybridep" and g2604["hybridep_sms"] == 32 and not g2604["overlap"]
    g2606 = recipe(_row(df, "MB-PERF-26.06", "deepseek-v3", "GB300", "MXFP8"))
    assert g2606["cuda_graphs"] == ("full_iteration",) and g2606["overlap"] and g2606["fp8_attention"]
    assert g2606["recompute_modules"] == () and g2606["fused_mlp"] and g2606["mtp_layers"] == 1
    # GB200: [mla_up_proj] until v0.3.1, [mlp] at v0.4.x, [mla_up_proj] again from v0.5.0
    gb200 = [recipe(_row(df, s, "deepseek-v3", "GB200", "MXFP8"))["recompute_modules"]
             for s in ("MB-PERF-26.02.01", "MB-PERF-26.04", "MB-PERF-26.06")]
    assert gb200 == [("mla_up_proj",), ("mlp",), ("mla_up_proj",)]
    # v0.4.2 B200_FP8_MX_V2: deepep, pp8 vp2 ep32, overlap, [mla_up_proj, mlp]; B300_V2 pp8 (L8)
    b200 = recipe(_row(df, "MB-PERF-26.04.01", "deepseek-v3", "B200", "MXFP8"))
    assert (b200["dispatcher"], b200["plan"], b200["overlap"]) == ("deepep", (1, 8, 2, 32), True)
    assert b200["pipeline_layers"] == L16 and sum(L16) == 61
    b300 = recipe(_row(df, "MB-PERF-26.04.01", "deepseek-v3", "B300", "MXFP8"))
    assert b300["pipeline_layers"] == L8 and sum(L8) == 61
    # v0.2.0 B200 base config names no flex backend: the provider's alltoall; the 25.11 label
    # "w/o MTP" turns MTP off
    assert recipe(_row(df, "MB-PERF-25.11", "deepseek-v3", "B200", "FP8-MX", "2048"))["dispatcher"] == "alltoall"
    assert recipe(_row(df, "MB-PERF-25.11", "deepseek-v3", "GB200", "BF16"))["mtp_layers"] == 0
    kimi = recipe(_row(df, "MB-PERF-26.04", "kimi-k2", "GB300", "MXFP8"))
    assert kimi["optimizer"] == "muon" and kimi["mtp_layers"] == 0
    assert unmodelled(kimi) == []               # Muon is priced (workloads/muon.py)


@pytest.mark.parametrize("gpu", ["GB300", "GB200"])
def test_dsv4_flash_rows_read_the_v0_6_0_recipe(df, gpu):
    # v0.6.0 deepseek_v4_flash_pretrain_128gpu_gb200_fp8mx_config (the GB300 config is it with
    # other env_vars): MBS 1, tp1 pp1 (VP None) ep64; hybridep, moe_flex_dispatcher_num_sms 32,
    # overlap_moe_expert_parallel_comm False; full-iteration graph; [mla_up_proj]; TE op fuser
    # (the fused grouped MLP); no FP8 attention; Adam; the HF config's one MTP layer;
    # dsa_indexer_loss_coeff 0.01 with dsa_indexer_use_sparse_loss True: the row is predicted
    # with the model's attention.indexer_loss "sparse".
    r = _row(df, "MB-PERF-26.08", "deepseek-v4-flash", gpu, "MXFP8", "2048")
    got = recipe(r)
    assert got["plan"] == published_plan(r) == (1, 1, 1, 64)
    assert (got["dispatcher"], got["hybridep_sms"], got["overlap"]) == ("hybridep", 32, False)
    assert got["cuda_graphs"] == ("full_iteration",) and got["recompute_modules"] == ("mla_up_proj",)
    assert got["fused_mlp"] and not got["fp8_attention"] and got["optimizer"] == "adam"
    assert got["mtp_layers"] == 1 and got["pipeline_layers"] == ()
    assert got["router_fusion"] and got["aux_loss"] and got["indexer_loss"] == "sparse"
    assert unmodelled(got) == [] and validate_mbperf.skip_reason(r) is None
    w = validate_mbperf.scenario_for(r)["workload"]
    assert w["model"]["attention"]["indexer_loss"] == "sparse" and w["model"]["mtp_layers"] == 1
    assert w["model"]["attention"]["index_topk"] == 512 and w["recompute"] == "mla_up_proj"
    assert "pipeline_layers" not in w["parallel"] and w["parallel"]["schedule"] == "1f1b"


def test_published_plan_reads_na_and_parenthesised_cells(df):
    assert published_plan(_row(df, "MB-PERF-26.06", "deepseek-v3", "B300", "MXFP8")) == (2, 8, 1, 8)
    assert published_plan(_row(df, "MB-PERF-25.09", "deepseek-v3", "GB200", "FP8", "2048")) == (1, 4, 4, 64)


@pytest.mark.parametrize("source, arch, gpu, precision, gbs, why", [
    ("MB-PERF-25.09", "deepseek-v3", "B200", "FP8", "2048", "token-dropping run"),
    ("MB-PERF-25.09", "deepseek-v3", "H100", "FP8", "8192", "no recipe read"),
    ("MB-PERF-25.11", "deepseek-v3", "GB300", "BF16", "4096", "published plan (mbs, pp, vp, ep) (1, 2, 4, 32) "
                                                             "differs from the release's recipe (1, 4, 4, 64)"),
    ("MB-PERF-26.06", "deepseek-v3", "B300", "MXFP8", "4096", "published plan (mbs, pp, vp, ep) (2, 8, 1, 8) "
                                                             "differs from the release's recipe (1, 8, 2, 8)"),
])
def test_skip_reasons(df, source, arch, gpu, precision, gbs, why):
    assert why in validate_mbperf.skip_reason(_row(df, source, arch, gpu, precision, gbs))


def test_kimi_rows_run_with_muon(df):
    r = _row(df, "MB-PERF-26.06", "kimi-k2", "GB300", "MXFP8")
    assert validate_mbperf.skip_reason(r) is None
    assert validate_mbperf.scenario_for(r)["workload"]["optimizer"] == "muon"


def test_a_predicted_row_runs_its_recipe(df):
    r = _row(df, "MB-PERF-26.04.01", "deepseek-v3", "B200", "MXFP8")
    assert validate_mbperf.skip_reason(r) is None
    w = validate_mbperf.scenario_for(r)["workload"]
    assert w["parallel"]["pipeline_layers"] == list(L16) and w["parallel"]["schedule"] == "interleaved"
    assert (w["recompute"], w["moe"]["dispatcher"], w["moe"]["overlap"]) == ("mla_up_proj_mlp", "deepep", True)
    assert w["cuda_graphs"] == ["attn", "moe_router", "moe_preprocess"] and w["fp8"] == {"recipe": "mxfp8"}
    assert w["model"] == "deepseek-v3"                      # the preset's one MTP layer
    full = validate_mbperf.scenario_for(_row(df, "MB-PERF-26.08", "deepseek-v3", "GB300", "MXFP8"))["workload"]
    assert full["cuda_graphs"] == ["full_iteration"] and full["fp8"]["dot_product_attention"]
    assert (full["recompute"], full["moe"]["hybridep_sms"], full["moe"]["fused_mlp"]) == ("none", 32, True)
    wo = validate_mbperf.scenario_for(_row(df, "MB-PERF-25.11", "deepseek-v3", "GB200", "BF16"))["workload"]
    assert wo["model"]["mtp_layers"] == 0 and wo["precision"] == "bf16" and "fp8" not in wo


def test_run_predicts_the_rows_without_a_skip_reason():
    out = validate_mbperf.run(lambda sc: (1000.0, {}))
    assert len(out) == 38 and (out.skipped == "").sum() == 31       # 25 V3 + 4 Kimi K2 + 2 V4
    done = out[out.skipped == ""]
    assert (done.error_pct == ((1000.0 / done.published_tok_s_gpu - 1) * 100).round(1)).all()
    s = validate_mbperf.summary(out)
    assert s["predicted"] == 31 and set(s["median_abs_error_pct_by_gpu"]) == {"GB300", "GB200", "B300", "B200"}
