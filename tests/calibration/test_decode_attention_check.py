"""The paged decode-attention kernel against FlashAttention-2's published H100 paged
batch-decode times (calibration/decode_attention_check.py,
calibration/reference/kernels/paged_decode_attention_h100.csv)."""

from __future__ import annotations

import pytest

from calibration import decode_attention_check as dac
from hw_models import catalog
from hw_models.compute import ComputeModel
from hw_models.profile import load

MIB = 2 ** 20


@pytest.fixture(scope="module")
def cm():
    return ComputeModel(catalog.gpu("h100-sxm"), load("h100"))


def test_rows_read_what_the_shapes_imply():
    """nvbench's Read is the K and V pages plus the queries: Llama-3-70B (8 KV heads of 128,
    bf16) over 64 sequences of 128 tokens reads 2 x 8 x 128 x 2 B x 64 x 128 = 32 MiB of
    cache and 64 x 64 x 128 x 2 B = 1 MiB of queries: the published 33.000 MiB."""
    d = dac.load()
    r = d[(d.config == "gqa8") & (d.seq_len == 128)].iloc[0]
    assert r.read_mib == pytest.approx((2 * 8 * 128 * 2 * 64 * 128 + 64 * 64 * 128 * 2) / MIB)
    assert r.gpu_time_us == 28.780


def test_engines_yaml_holds_the_fit():
    k = catalog.serving_engines()["flash_decode_paged"]
    f = dac.fit()
    assert k["floor_us"] == pytest.approx(f["floor_us"], abs=0.01)
    assert k["kv_half_tokens"] == pytest.approx(f["kv_half_tokens"], abs=0.1)
    assert k["ramp_exponent"] == pytest.approx(f["ramp_exponent"], abs=0.001)


@pytest.mark.parametrize("config, seq_len, read_mib, write_mib, published_us", [
    ("gqa8", 128, 33.0, 1.0, 28.780),     # Llama-3-70B heads, 64 sequences
    ("mha", 512, 512.5, 0.5, 194.181),    # 32 / 32 heads, 64 sequences
    ("mha", 64, 64.5, 0.5, 53.954),
])
def test_published_rows_by_hand(cm, config, seq_len, read_mib, write_mib, published_us):
    """12.36 us + (Read + Write) / (3.35 TB/s x 0.8761 r / (r + 1)), r = (L / 51.8)^1.443:
    e.g. 34 MiB at 128 tokens, r = 3.69, share 0.689, 35,651,584 B / 2.309e12 B/s =
    15.44 us, 27.8 us in all against 28.78 published; each within the fit's largest
    error (12.1%)."""
    b = (read_mib + write_mib) * MIB
    r = (seq_len / 51.8) ** 1.443
    hand = 12.36e-6 + b / (3.35e12 * 0.8761 * r / (r + 1))
    assert cm.decode_attention(b, seq_len) == pytest.approx(hand, rel=1e-9)
    assert hand * 1e6 == pytest.approx(published_us, rel=0.122)


def test_fit_error_and_the_op_it_replaces():
    """Median |error| 4.2% over the nine rows, none over 12.1%; the plain memory-bound op
    (launch + bytes at the STREAM share) was 55% fast at the median."""
    t = dac.table()
    assert len(t) == 9
    assert t.err.abs().median() < 0.045 and t.err.abs().max() < 0.125
    assert t.stream_err.median() < -0.5
