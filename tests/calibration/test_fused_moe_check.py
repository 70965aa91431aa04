"""vLLM's Triton fused_moe against its published benchmark_moe.py times
(calibration/fused_moe_check.py, calibration/reference/inference/vllm_fused_moe_kernel.csv)."""

from __future__ import annotations

import statistics

import pytest

from calibration import fused_moe_check as fm
from hw_models import catalog
from hw_models.compute import smooth_max, wave_factor

E, K, H, N = 128, 8, 2048, 768         # Qwen3-30B-A3B's MoE at TP 1


@pytest.fixture(scope="module")
def table():
    return fm.table()


def test_one_call_is_the_benchmarked_kernels():
    """benchmark_moe.py passes the gating logits: no router GEMM in a call."""
    assert [o.name for o in fm.call_ops(4, "bf16")] == list(fm.CALL)


def test_b200_share_at_batch_1_by_hand():
    """One token, top-8 of 128: the two GEMMs read 8 experts' w13 (2 x 768 x 2048) and w2
    (2048 x 768) in BF16 plus the token's activations; memory bound on a B200, so the
    roofline is those bytes at the HBM bandwidth, and the published 39.61 us call reaches
    that over 39.61 us of it."""
    up = 2.0 * K * (2 * N) * H + 2.0 * K * (H + 2 * N)
    down = 2.0 * K * H * N + 2.0 * K * (N + H)
    roof = (up + down) / catalog.gpu("b200").hbm_bw
    assert fm.roofline_s("b200", 1, "bf16") == pytest.approx(roof, rel=1e-9)
    row = fm.load().query("gpu == 'b200' and batch == 1").iloc[0]
    assert row.kernel_us == 39.61
    assert roof * 1e6 / row.kernel_us == pytest.approx(0.2489, abs=5e-4)


def test_hand_priced_w13_gemm_equals_the_model():
    """The w13 GEMM of 4 tokens on a B200 priced from its profile's GEMM curve by hand:
    uniform routing touches 128 (1 - (120/128)^4) experts, each gets round(32 / that)
    tokens; launch + the p-norm of the compute time (waves of (per, 1536) tiles) and the
    bytes at the fitted bandwidth."""
    cm = fm.compute_model("b200")
    g, prof = cm.gpu, cm.profile
    c = prof.gemm_curve("bf16")
    active = E * (1 - (1 - K / E) ** 4)
    per = max(1, round(4 * K / active))
    flops = 2.0 * 4 * K * H * 2 * N
    nbytes = 2.0 * 4 * K * (H + 2 * N) + 2.0 * active * H * 2 * N
    rate = cm.tensor_rate("bf16")
    wave = wave_factor(per, 2 * N, g.sms, c.tile_m, c.tile_n, c.wave_exp)
    t_c = (flops * wave + c.flops_half) / (rate * c.eff_max)
    t_m = nbytes / (g.hbm_bw * (c.bw_eff or prof.memory.bw_eff))
    hand = (c.launch_us * 1e-6 + smooth_max(t_c, t_m, c.roofline_p)) / cm.speed_scale
    assert fm.price("b200", 4, "bf16")["expert_up"] == pytest.approx(hand, rel=1e-12)


def test_blackwell_is_not_further_off_than_hopper(table):
    """At the batch sizes the B200 rows have (1, 2, 4) the model's B200 call is off by as
    much as the H100's and the B200 kernels reach the same share of their roofline: the
    B200 median lies within the spread of the H100's two published config sets (a
    Blackwell-specific share, as engines.yaml triton_ssd has, would put it well below)."""
    common = fm.common_batches(table)
    assert common == (1, 2, 4)
    s = fm.summary(table, common).set_index(["gpu", "config"])
    for col in ("median_model_over_measured", "median_share"):
        hopper = s.loc["h100-sxm"][col]
        spread = hopper.max() - hopper.min()
        assert abs(s.loc[("b200", "default"), col] - hopper.mean()) <= spread


def test_a100_bf16_decode_batches_within_ten_percent(table):
    """BF16 on the A100 at 8-96 tokens (decode batches): the model within 10% of every
    published call time."""
    a100 = table[(table.gpu == "a100-40gb") & (table.batch >= 8)]
    assert len(a100) == 7
    assert all(abs(r - 1) < 0.10 for r in a100.model_over_measured)
    assert statistics.median(a100.model_over_measured) == pytest.approx(1.05, abs=0.03)
