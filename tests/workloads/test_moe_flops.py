"""Model FLOPs of MoE models: 6 x (active GEMM weights + attention products) per token,
checked against a hand sum for DeepSeek-V3 at s = 4096 (also written out in docs/moe.md)."""

from __future__ import annotations

import pytest

from workloads import moe
from workloads.model import model_flops, presets


def test_deepseek_v3_flops_per_token_by_hand():
    m = presets()["deepseek-v3"]
    mla = 7168 * 1536 + 1536 * 128 * 192 + 7168 * 576 + 512 * 128 * 256 + 128 * 128 * 7168
    assert mla == 187_105_280                       # GEMM weights only (no norms)
    mlp9 = 9 * 3 * 7168 * 2048                      # 8 routed + 1 shared expert = one dense MLP
    assert mlp9 == 3 * 7168 * 18432 == 396_361_728
    router = 7168 * 256
    layers = 3 * (mla + mlp9) + 58 * (mla + router + mlp9)
    logits = 7168 * 129280
    attn = 61 * 4096 * 128 * (192 + 128)           # QK^T over d_qk = 192, AV over d_v = 128
    mtp = 2 * 7168 * 7168 + (mla + router + mlp9) + 4096 * 128 * 320 + logits
    assert moe.flops_per_token(m) == 6 * (layers + logits + attn + mtp)
    assert moe.flops_per_token(m) / 1e9 == pytest.approx(291.85, abs=0.01)
    no_mtp = m.model_copy(update={"mtp_layers": 0})
    assert moe.flops_per_token(no_mtp) / 1e9 == pytest.approx(281.15, abs=0.01)
    assert model_flops(m, 1000) == pytest.approx(1000 * moe.flops_per_token(m))


def test_dense_model_flops_unchanged():
    """A dense GPT keeps Korthikanti's 72 B L s h^2 (1 + s/(6h) + V/(12hL)) per sequence."""
    m = presets()["gpt3-175b"]
    s, h, L, V = m.seq_len, m.hidden, m.layers, m.vocab
    assert model_flops(m, s) == pytest.approx(72 * L * s * h**2 * (1 + s / (6 * h) + V / (12 * h * L)))


def test_window_layers_attend_the_window():
    """gpt-oss: every other layer attends 128 keys, so the attention term is
    (L/2)(s + 128) heads (64 + 64) per token instead of L s heads 128."""
    m = presets()["gpt-oss-20b"]
    full = m.model_copy(update={"sliding_window": None})
    diff = moe.flops_per_token(full) - moe.flops_per_token(m)
    assert diff == pytest.approx(6 * 12 * (4096 - 128) * 64 * 128)
