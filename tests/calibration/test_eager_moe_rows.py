"""The eager Megatron-Core runs users published (moe_eager_training.csv): Megatron's FLOP
count against NVIDIA's own tokens / TFLOP ratio, the published figures as parsed, and the
scenario a row runs."""

from __future__ import annotations

import pytest

from calibration import validate_eager_moe as eager
from workloads.model import presets


@pytest.mark.parametrize("arch, ratio", [
    # Megatron-Bridge's performance tables publish tokens/s/GPU and model TFLOP/s/GPU for the
    # same rows; their ratio is the FLOP count per token (e.g. 26.02 H100: 30B-A3B 23.08,
    # 235B-A22B 148.19; 26.04 GB200: 23.01, 148.10; moe_training.csv; DeepSeek-V3 with MLA,
    # 3 dense layers and one MTP layer, 26.08: GB300 1635 TFLOP/s at 6288 tokens/s = 260.0,
    # GB200 1276 at 4912 = 259.8; DeepSeek-V4 Flash with its hybrid attention, 26.08:
    # GB300 748 at 8224 = 90.95, GB200 706 at 7776 = 90.79; mbperf_moe_training.csv).
    ("qwen3-30b-a3b", 23.0e9), ("qwen3-235b-a22b", 148.0e9), ("deepseek-v3", 260.0e9),
    ("deepseek-v4-flash", 90.87e9)])
def test_megatron_flop_count_matches_nvidias_ratio(arch, ratio):
    assert eager.megatron_flops_per_token(presets()[arch], 4096) == pytest.approx(ratio, rel=0.005)


def test_flop_count_by_hand():
    # Qwen3-30B-A3B, s 4096: attention 2 [2048 (4096 + 2 x 512) + 4096 x 4096 + 4096 x 2048]
    # = 71.30M, experts 2 x 2048 x 768 x 8 x 3 = 75.50M per layer; logits 2 x 2048 x 151936
    attn = 2 * (2048 * (4096 + 1024) + 4096 * 4096 + 4096 * 2048)
    mlp = 2 * 2048 * 768 * 8 * 3
    want = 3 * (48 * (attn + mlp) + 2 * 2048 * 151936)
    assert eager.megatron_flops_per_token(presets()["qwen3-30b-a3b"], 4096) == want


def test_published_figures():
    df = eager.rows()
    assert len(df) == 7
    got = {(r.source_id, r.tp, r.global_batch_seqs, r.recompute): eager.published(r)
           for r in df.itertuples()}
    # Pai #658 row 1: 4096 x 4096 tokens / 42.537 s / 256 GPUs = 1540.7 (published 1540.68)
    assert got[("PAI-658", "1", "4096", "full")] == 1540.68
    assert 4096 * 4096 / 42.537 / 256 == pytest.approx(1540.68, abs=0.05)
    # ModelZoo #7: ~150 TFLOP/s per GPU over 23.006 GFLOP per token
    assert got[("MZOO-7", "1", "64", "none")] == pytest.approx(150e12 / 23.006e9, rel=1e-4)


def test_scenario_of_a_row():
    df = eager.rows()
    sel = next(df[(df.source_id == "PAI-658") & (df.recompute == "moe_act layernorm")].itertuples())
    sc = eager.scenario_for(sel)
    w = sc["workload"]
    assert sc["cluster"] == {"system": "dgx-h800", "nodes": 32}
    assert w["recompute_modules"] == ["moe_act", "layernorm"] and w["cuda_graphs"] == "none"
    p = w["parallel"]
    assert (p["tp"], p["pp"], p["vpp"], p["ep"], p["tp_comm_overlap"]) == (2, 32, 3, 8, "ring")
    assert p["account_for_embedding_in_pipeline_split"] and p["sequence_parallel"]
    assert w["moe"] == {"dispatcher": "alltoall", "aux_loss": True, "router_fusion": False,
                        "permute_fusion": False}
    cap = eager.scenario_for(next(df[df.source_id == "PAI-643"].itertuples()))
    assert cap["workload"]["moe"]["capacity_factor"] == 1.0 and cap["workload"]["recompute"] == "none"
    zoo = eager.scenario_for(next(df[df.source_id == "MZOO-7"].itertuples()))
    assert zoo["workload"]["moe"]["router_dtype"] == "fp32" and zoo["workload"]["moe"]["permute_fusion"]


def test_dsv4_attention_flops_by_hand():
    # DeepSeek-V4 Flash, s 4096, per token and forward, grouped by layer type as Megatron's
    # _dsv4_hybrid_self_attention_flops does: 44 layers with the MTP one (3 window-only,
    # 21 CSA r 4, 20 HCA r 128); h 4096, 64 heads of 512, q LoRA 1024, 8 output groups of
    # LoRA 1024, window 128; indexer 64 heads of 128, top-k 512 (<= s / 4)
    h, a, d, ql, s = 4096, 64, 512, 1024, 4096
    proj = ql * (h + a * d + 1) + h * d + d + a * d * 1024 + 8 * 1024 * h
    window = a * 128 * d * 2
    topk = 512 * (1 - 512 * 4 / (2 * s))              # causal mean of the top-k keys: 384
    csa = (a * topk * d * 2 + h * 2 * d * 2                  # keys, compressor (2 wide)
           + h * 2 * 128 * 2 + ql * 64 * 128 + h * 64 + 64 * 128 / 4 * s)   # indexer
    hca = h * d * 2 + a * d / 128 * s                   # compressor, every compressed key
    want = 2 * (44 * (proj + window) + 21 * csa + 20 * hca)
    m = presets()["deepseek-v4-flash"]
    assert eager._dsv4_attention_flops(m, s) == pytest.approx(want, rel=1e-12)


def test_flop_count_refuses_what_it_does_not_count():
    # the count is Megatron's MoE count: a dense model is not counted
    m = presets()["llama3-8b"]
    assert not eager.megatron_flops_counted(m) and eager.megatron_flops_counted(presets()["deepseek-v4-pro"])
    with pytest.raises(ValueError, match="not reproduced"):
        eager.megatron_flops_per_token(m, 4096)
