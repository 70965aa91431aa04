"""Which token dispatcher each Megatron-Bridge MoE row's release ran
(calibration/moe_recipes.py): values read from the perf scripts at tags v0.2.0-v0.6.0
(the flex dispatcher with the HybridEP backend as ``hybridep``), and HybridEP's SMs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from calibration.moe_recipes import hybridep_sms, qwen3_dispatcher, recipe_options


def _row(source: str, precision: str = "MXFP8") -> SimpleNamespace:
    return SimpleNamespace(source_id=source, precision=precision)


@pytest.mark.parametrize("source, arch, gpu, expected", [
    # GB300 / GB200: hybridep in every base config (v0.2.0 workload_base_configs.py,
    # v0.3.0-v0.5.1 qwen3_workload_base_configs.py, v0.6.0 perf_recipes/qwen/gb300)
    ("MB-PERF-25.11", "qwen3-30b-a3b", "GB300", "hybridep"),
    ("MB-PERF-25.11", "qwen3-235b-a22b", "GB300", "hybridep"),
    ("MB-PERF-26.04", "qwen3-235b-a22b", "GB300", "hybridep"),
    ("MB-PERF-26.08", "qwen3-235b-a22b", "GB300", "hybridep"),
    ("MB-PERF-26.02", "qwen3-235b-a22b", "GB200", "hybridep"),
    # Qwen3-235B B300: v0.3.0 / v0.4.0 base configs name no backend, v0.3.1's function sets
    # "alltoall"; v0.4.2 (26.04.01) QWEN3_235B_A22B_PRETRAIN_CONFIG_B300_*: hybridep (#3490)
    ("MB-PERF-26.02", "qwen3-235b-a22b", "B300", "alltoall"),
    ("MB-PERF-26.02.01", "qwen3-235b-a22b", "B300", "alltoall"),
    ("MB-PERF-26.04", "qwen3-235b-a22b", "B300", "alltoall"),
    ("MB-PERF-26.04.01", "qwen3-235b-a22b", "B300", "hybridep"),
    # Qwen3-30B B300: hybridep from its first configs (v0.3.0)
    ("MB-PERF-26.02", "qwen3-30b-a3b", "B300", "hybridep"),
    ("MB-PERF-26.06", "qwen3-30b-a3b", "B300", "hybridep"),
    # Qwen3-30B B200: no backend at v0.2.0 / v0.3.0 (provider's alltoall), hybridep from v0.3.1
    ("MB-PERF-26.02", "qwen3-30b-a3b", "B200", "alltoall"),
    ("MB-PERF-26.02.01", "qwen3-30b-a3b", "B200", "hybridep"),
    # Qwen3-30B H100: none at v0.2.0, deepep at v0.3.0, hybridep from v0.3.1
    ("MB-PERF-25.11", "qwen3-30b-a3b", "H100", "alltoall"),
    ("MB-PERF-26.02.01", "qwen3-30b-a3b", "H100", "hybridep"),
    ("MB-PERF-26.02", "qwen3-30b-a3b", "H100", "deepep"),
    ("MB-PERF-26.04", "qwen3-30b-a3b", "H100", "hybridep"),
    # Qwen3-235B B200 / H100: NCCL all-to-all in every release
    ("MB-PERF-26.02.01", "qwen3-235b-a22b", "B200", "alltoall"),
    ("MB-PERF-26.04.01", "qwen3-235b-a22b", "H100", "alltoall"),
    # other sources
    ("DGXC-GROK-A", "grok1-314b", "H100", "alltoall"),
])
def test_qwen3_dispatcher_follows_the_release(source, arch, gpu, expected):
    assert qwen3_dispatcher(_row(source), arch, gpu) == expected


@pytest.mark.parametrize("source, gpu, expected", [
    # v0.4.0 GPT_OSS_120B_PRETRAIN_CONFIG_{GB200,B200}_BF16_V2: hybridep; v0.4.2 (26.04.01)
    # switched both to alltoall (#3561, #3614), GB200 keeping moe_a2a_overlap
    ("MB-PERF-26.04", "GB200", ("hybridep", True)),
    ("MB-PERF-26.04.01", "GB200", ("alltoall", True)),
    ("MB-PERF-26.04", "B200", ("hybridep", False)),
    ("MB-PERF-26.04.01", "B200", ("alltoall", False)),
    # B300 BF16 V2 stays hybridep
    ("MB-PERF-26.04.01", "B300", ("hybridep", False)),
])
def test_gpt_oss_26_04_01_dispatchers(source, gpu, expected):
    assert recipe_options(_row(source, "BF16"), "gpt-oss-120b", gpu) == expected


def test_qwen3_overlap_unchanged_by_the_dispatcher():
    # Qwen3-235B H100: moe_a2a_overlap True with NCCL all-to-all in every release
    assert recipe_options(_row("MB-PERF-26.04", "FP8"), "qwen3-235b-a22b", "H100") == ("alltoall", True)
    # GB300 MXFP8 full-iteration recipes (v0.5.0+): HybridEP with the overlap
    assert recipe_options(_row("MB-PERF-26.06"), "qwen3-235b-a22b", "GB300") == ("hybridep", True)
    assert recipe_options(_row("MB-PERF-26.04"), "qwen3-30b-a3b", "GB300") == ("hybridep", False)


@pytest.mark.parametrize("source, arch, gpu, precision, expected", [
    # the perf scripts set moe_hybridep_num_sms = 32 wherever the backend is hybridep
    # (v0.2.0 helpers.py, v0.3.0-v0.5.x overrides.py, v0.6.0 perf_recipes/_common.py) ...
    ("MB-PERF-25.11", "qwen3-235b-a22b", "GB300", "BF16", 32),
    ("MB-PERF-26.06", "qwen3-30b-a3b", "B300", "MXFP8", 32),
    ("MB-PERF-26.08", "qwen3-235b-a22b", "GB300", "MXFP8", 32),
    # ... but v0.6.0's Qwen3-235B GB300 BF16 recipe sets 16 after that
    ("MB-PERF-26.06", "qwen3-235b-a22b", "GB300", "BF16", 32),
    ("MB-PERF-26.08", "qwen3-235b-a22b", "GB300", "BF16", 16),
])
def test_hybridep_sms_from_the_recipe(source, arch, gpu, precision, expected):
    assert hybridep_sms(_row(source, precision), arch, gpu) == expected


def test_hybridep_rows_get_hybridep_and_their_sms_in_the_scenario():
    from calibration.validate_moe import gpu_of, rows, scenario_for
    df = rows()
    gb300 = [r for r in df.itertuples() if gpu_of(r) == "GB300"
             and str(r.source_id).startswith("MB-PERF-26.04") and "235" in str(r.arch_id)]
    assert gb300
    for r in gb300:
        moe = scenario_for(r)["workload"]["moe"]
        assert moe["dispatcher"] == "hybridep" and moe["hybridep_sms"] == 32
    h100 = [r for r in df.itertuples() if gpu_of(r) == "H100" and "grok" in str(r.arch_id)]
    assert "hybridep_sms" not in scenario_for(h100[0])["workload"]["moe"]


def test_hybridep_against_its_published_intranode_bandwidth():
    """``hybridep`` prices a call inside one NVLink domain at HybridEP's published
    algorithm bandwidth: a GPU receives each token once per rank holding one of its
    experts. Hand check of the README's shape (8 ranks x 8 experts, top-8): a token reaches
    R = 8 (1 - C(56, 8) / C(64, 8)) = 5.43 ranks, so 4096 R x 7168 x 2 bytes per call, over
    734.95 GB/s (B200, 16 SMs, dispatch)."""
    import math

    from calibration.deepep_check import hybridep_rows, hybridep_seconds

    ranks = 8 * (1 - math.comb(56, 8) / math.comb(64, 8))
    assert ranks == pytest.approx(5.43, abs=0.01)
    t, counted = hybridep_seconds("dgx-b200", 8, combine=False, sms=16)
    assert counted == pytest.approx(4096 * ranks * 7168 * 2, rel=1e-6)
    assert t == pytest.approx(counted / 734.95e9, rel=1e-6)
    df = hybridep_rows()
    # the published rows are the model's rate (8 / 16 / 24 / 32 / 36 ranks) ...
    assert (df.error_vs_kernel_pct.abs() <= 0.05).all()
    # ... where DeepEP's kernels, the former stand-in, hold ~715 GB/s at any width
    wide = df[df.ranks >= 24]
    assert ((wide.deepep / wide.kernel_gb_s - 1) * 100 > 5).all()
