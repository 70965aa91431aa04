"""DeepSeek-V4 attention FLOPs and pairs by hand on a tiny configuration, and the KV cache
of the presets at 1M tokens against DeepSeek's published ratios to DeepSeek-V3.2."""

from __future__ import annotations

import pytest

from workloads import dsv4
from workloads.graph import CommGroup
from workloads.inference.dsv4_ops import DSV4IterationOps
from workloads.inference.ops import Shape
from workloads.layer_dsv4 import compressed_pairs, core_attention
from workloads.layers import LayerContext
from workloads.model import ModelSpec, presets
from workloads.moe import active_params, flops_per_token

TINY = dict(layers=3, hidden=64, heads=4, kv_heads=1, kv_channels=32, vocab=100, seq_len=64,
            activation="swiglu", norm="rmsnorm", bias=False, rope=True, tied_embeddings=False,
            attention=dict(kind="dsv4", q_lora_rank=16, qk_rope_head_dim=8, head_dim=32,
                           o_lora_rank=8, o_groups=2, window=8, compress_ratios=[0, 4, 16],
                           index_heads=2, index_head_dim=8, index_topk=4),
            hyper_connections=dict(copies=2, sinkhorn_iters=3),
            moe=dict(experts=4, top_k=2, shared_experts=1, expert_ffn_hidden=16,
                     router="sqrtsoftplus", hash_layers=1))


def test_tiny_flops_per_token_by_hand():
    """h 64, 4 heads of 32, q_lora 16, o_lora 8 in 2 groups, window 8, ratios [0, 4, 16],
    indexer 2 x 8 top-4, hc 2 copies, 4 experts top-2 of 16 + 1 shared, s 64, vocab 100.
    GEMM weights per token: attention 64*16 + 16*4*32 + 64*32 + 4*32*8 + 2*8*64 = 7168 per
    layer; the ratio-4 compressor 2*64*2*32 = 8192 and indexer 16*2*8 + 64*2 + 2*64*2*8 =
    2432; the ratio-16 compressor 2*64*32 = 4096; mHC 2*8*2*64 = 2048 per layer; MoE router
    64*4 + routed 2*3*64*16 + shared 3*64*16 = 9472 per layer; output 64*100.
    Attention (heads x keys x (32 + 32)): layer 0 keys 8 -> 2048; layer 1 keys 8 + min(4,
    64/4) = 12 -> 3072 plus the index scores 16 entries x 2 x 8 = 256; layer 2 keys 8 +
    64/16 = 12 -> 3072. Sum 85632; training FLOPs 6 x that."""
    m = ModelSpec(**TINY)
    per = 3 * (7168 + 2048 + 9472) + 8192 + 2432 + 4096 + 2048 + 3072 + 256 + 3072 + 6400
    assert per == 85632
    assert flops_per_token(m) == 6 * per


def test_tiny_sparse_attention_pairs_by_hand():
    """s 64, window 8: 64*8 - 8*7/2 = 484 window pairs; ratio 4 with top-4: positions below
    16 see p/4 entries (16^2/8 = 32), the 48 after them 4 each (192): 224; ratio 16 without
    a cap: 64^2/32 = 128. Forward FLOPs 2 x heads x pairs x (32 + 32)."""
    assert compressed_pairs(64, 4, 4) == 224
    assert compressed_pairs(64, 16, None) == 128
    m = ModelSpec(**TINY)
    ctx = LayerContext(m, 1, 1, False, "bf16", CommGroup((0,), "tp"))
    assert core_attention(ctx, 4, bwd=False).flops == 2 * 4 * (484 + 224) * 64
    assert core_attention(ctx, 16, bwd=True).flops == 2.5 * 2 * 4 * (484 + 128) * 64
    assert core_attention(ctx, 0, bwd=False).flops == 2 * 4 * 484 * 64


# FP8 cache, DeepSeek's mixed entry format (report section 2.3.4; vLLM's fp8_ds_mla for V4):
# 448 FP8 values + 7 UE8M0 scales (one per 64) + 64 BF16 RoPE values = 583 bytes; an
# indexer key 128 FP8 values + one fp32 scale = 132 bytes (vLLM's FP8 indexer cache).
ENTRY, KEY = 448 + 7 + 128, 128 + 4
FLASH_PER_TOKEN = 21 * (ENTRY + KEY) / 4 + 20 * ENTRY / 128     # 21 CSA, 20 HCA layers


def test_flash_kv_cache_at_1m_tokens_by_hand():
    """DeepSeek-V4-Flash, FP8 cache, one GPU: per token 21 CSA layers x (583 + 132) / 4
    and 20 HCA layers x 583 / 128 = 3844.84 bytes; 1M tokens: 3.755 GiB. Per sequence: 43
    windows of 128 entries of 583 bytes, the CSA compressors' fp32 kv + score rows (2 x
    2*4 x 2*512 x 4 bytes) and the indexer's (2 x 2*4 x 2*128 x 4), the HCA compressors'
    (2 x 128 x 512 x 4): 15,414,912 bytes."""
    ops = DSV4IterationOps(presets()["deepseek-v4-flash"], 1, 1, "fp8")
    assert FLASH_PER_TOKEN == pytest.approx(3844.84375)
    assert ops.kv_bytes_per_token() == pytest.approx(FLASH_PER_TOKEN)
    assert ops.kv_bytes_per_token() * 2**20 / 2**30 == pytest.approx(3.7547, abs=1e-4)
    state = 43 * 128 * ENTRY + 21 * (2 * 8 * 1024 * 4 + 2 * 8 * 256 * 4) + 20 * 2 * 128 * 512 * 4
    assert state == 15_414_912
    assert ops.state_bytes_per_seq() == pytest.approx(state)


def test_16bit_cache_keeps_every_element_at_two_bytes():
    """bf16 cache: 21 x (512 + 128) x 2 / 4 + 20 x 512 x 2 / 128 = 6880 bytes per token."""
    ops = DSV4IterationOps(presets()["deepseek-v4-flash"], 1, 1, "bf16")
    assert ops.kv_bytes_per_token() == pytest.approx(6880)


def test_decode_attention_reads_the_selected_entries():
    """One sequence decoding at 64k context, tp 1: a CSA layer attends 128 + min(512,
    65536/4) = 640 entries of 583 bytes (read once for all 64 heads), an HCA layer 128 +
    512, a window-only layer 128."""
    ops = DSV4IterationOps(presets()["deepseek-v4-flash"], 1, 1, "fp8")
    s = Shape(decode_seqs=1, decode_kv=65536, logits=1)
    for r, entries in ((4, 640), (128, 640), (0, 128)):
        attn = next(o for o in ops.attention_ops_of(s, r) if o.name == "decode_attn")
        assert attn.flops == 2 * 64 * 2 * 512 * entries
        assert attn.bytes == pytest.approx(ENTRY * entries + 2 * 2 * 64 * 512)


# DeepSeek-V3.2 (deepseek-ai/DeepSeek-V3.2-Exp config.json: DeepSeek-V3's shapes plus the
# lightning indexer, index_n_heads 64, index_head_dim 128, index_topk 2048): every layer
# caches per token the MLA latent in vLLM's fp8_ds_mla format (512 FP8 + 4 fp32 scales +
# 64 BF16 RoPE = 656 bytes) and an FP8 indexer key with its fp32 scale (132 bytes); one
# decoded token scores all L earlier keys in the indexer (2 x 64 x 128 FLOPs each) and
# attends 2048 of them in MLA's absorbed form (2 x 128 heads x (576 + 512) FLOPs each).
# Its indexer weights per layer: wq_b 1536*64*128, wk 7168*128, weights_proj 7168*64.
V32_LAYERS, L = 61, 2**20
V32_KV = V32_LAYERS * (656 + 132)
V32_INDEXER = 1536 * 64 * 128 + 7168 * 128 + 7168 * 64


def _v32_decode_flops() -> float:
    v3 = presets()["deepseek-v3"]
    weights = active_params(v3, embedding=False) + V32_LAYERS * V32_INDEXER
    attention = V32_LAYERS * (2 * 64 * 128 * L + 2 * 128 * 2048 * (576 + 512))
    return 2 * weights + attention


def _decode_flops(m: ModelSpec) -> float:
    """One token at context L: 2 x active weights + 2 x the attention and index scores."""
    attn = sum(dsv4.attention_per_token(m, i, L) for i in range(m.layers))
    return 2 * active_params(m, embedding=False) + 2 * attn


def test_pro_against_v32_at_1m_tokens():
    """DeepSeek-V4 report, Introduction: "In the scenario of 1M-token context, even
    DeepSeek-V4-Pro ... attains only 27% of the single-token FLOPs (measured in equivalent
    FP8 FLOPs) and 10% of the KV cache size relative to DeepSeek-V3.2". Both caches in
    vLLM's FP8 formats: 30 CSA x (583 + 132) / 4 + 31 HCA x 583 / 128 = 5503.7 of 48068
    bytes per token, 11.45%; DeepSeek's own indexer keys are FP4 (report 2.3.4: "attention
    computation within the lightning indexer is performed in FP4"), with 64 + 4 bytes a key
    it would be 10.45%. FLOPs: 26.2%. The published figures carry one to two digits."""
    pro = presets()["deepseek-v4-pro"]
    kv = DSV4IterationOps(pro, 1, 1, "fp8").kv_bytes_per_token()
    assert kv == pytest.approx(30 * (ENTRY + KEY) / 4 + 31 * ENTRY / 128)
    assert kv / V32_KV == pytest.approx(0.10, abs=0.02)
    assert _decode_flops(pro) / _v32_decode_flops() == pytest.approx(0.27, abs=0.02)


def test_flash_against_v32():
    """The report: V4-Flash "achieves only 10% of the single-token FLOPs and 7% of the KV
    cache size compared with DeepSeek-V3.2" at 1M tokens. Here 8.0% of the cache (7.3% with
    FP4 indexer keys) and 12.1% of the FLOPs."""
    assert FLASH_PER_TOKEN / V32_KV == pytest.approx(0.07, abs=0.012)
    flash = presets()["deepseek-v4-flash"]
    assert _decode_flops(flash) / _v32_decode_flops() == pytest.approx(0.10, abs=0.025)


@pytest.mark.parametrize(("tflops", "tokens"), [(748, 8224), (706, 7776)])
def test_flash_model_flops_match_megatron_bridge(tflops, tokens):
    """Megatron-Bridge's performance summary (26.08, "Model: DeepSeekV4 Flash", 128 GB300 /
    GB200, seq 4096; calibration/reference/modern/mbperf_moe_training.csv) publishes Model
    TFLOP/s/GPU and tokens/s/GPU: their ratio is its model FLOPs per token, 90.8-91.0
    GFLOP. Ours, counted independently from the shapes with the MTP module (the rows do
    not say; Megatron-Bridge's DeepSeek recipes train one, calibration/mbperf_recipes.py):
    92.45 GFLOP, 1.6% more (87.31 without it)."""
    m = presets()["deepseek-v4-flash"]
    assert flops_per_token(m) == pytest.approx(tflops * 1e12 / tokens, rel=0.02)
