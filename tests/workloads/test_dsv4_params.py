"""DeepSeek-V4 presets: parameter counts against the published ones, module by module by
hand, and the model keys' validation (workloads/dsv4.py, workloads/moe.py).

Published: "DeepSeek-V4-Pro with 1.6T parameters (49B activated) and DeepSeek-V4-Flash
with 284B parameters (13B activated)" (deepseek-ai model cards). The counts here are the
main model (the MTP module excluded, as DeepSeek-V3's 671B); the activated counts leave
out the input embedding (a lookup): with it Flash would be 13.8B, which does not round to
13B. Tolerances: the published figures' rounding ("13B" 12.5-13.5B, 3.8%; "49B" 1%;
"284B" 0.18%; "1.6T" 1.55-1.65T, 3.1%).
"""

from __future__ import annotations

import pytest

from hw_models.errors import ClusterSimError
from workloads import dsv4, moe
from workloads.model import presets, resolve

CASES = [("deepseek-v4-flash", 0.0018, 0.038), ("deepseek-v4-pro", 0.031, 0.01)]


@pytest.mark.parametrize(("name", "tol_total", "tol_active"), CASES)
def test_published_counts(name, tol_total, tol_active):
    m = presets()[name]
    assert m.params / 1e9 == pytest.approx(m.published_params_b, rel=tol_total)
    active = moe.active_params(m, embedding=False) / 1e9
    assert active == pytest.approx(m.published_active_params_b, rel=tol_active)


def test_flash_layers_by_hand():
    """DeepSeek-V4-Flash config.json shapes (h 4096, 64 heads of 512, q_lora 1024, o_lora
    1024 in 8 groups, index 64 x 128, hc_mult 4), reference inference/model.py modules:
    attention: wq_a 4096*1024 + q_norm 1024 + wq_b 1024*64*512 + wkv 4096*512 + kv_norm 512
    + wo_a 8 x (64*512/8)*1024 + wo_b 8*1024*4096 + sinks 64 = 106,956,352 (window only);
    CSA adds the overlapping compressor (ape 4*1024, wkv + wgate 2*4096*1024, norm 512) and
    the indexer (wq_b 1024*64*128, weights_proj 4096*64, its compressor ape 4*256 + 2*4096*256
    + norm 128): 126,098,624; HCA adds ape 128*512 + 2*4096*512 + 512: 111,216,704.
    mHC: 2 sub-layers x (fn 24*16384 + base 24 + scale 3) = 786,486."""
    m = presets()["deepseek-v4-flash"]
    window = (4096 * 1024 + 1024 + 1024 * 64 * 512 + 4096 * 512 + 512
              + 8 * (64 * 512 // 8) * 1024 + 8 * 1024 * 4096 + 64)
    csa = window + 4 * 1024 + 2 * 4096 * 1024 + 512 + 1024 * 64 * 128 + 4096 * 64 \
        + 4 * 256 + 2 * 4096 * 256 + 128
    hca = window + 128 * 512 + 2 * 4096 * 512 + 512
    assert (window, csa, hca) == (106_956_352, 126_098_624, 111_216_704)
    assert [dsv4.attention_params(m, i) for i in (0, 2, 3)] == [window, csa, hca]
    hc = 2 * (24 * 4 * 4096 + 24 + 3)
    assert dsv4.hc_layer_params(m) == hc == 786_486
    expert = 3 * 4096 * 2048
    # layer 0: hash-routed (router weight, no score-correction bias); layer 3: biased
    assert moe.layer_params(m, 0) == window + hc + 2 * 4096 + 256 * 4096 + 257 * expert
    assert moe.layer_params(m, 3) == hca + hc + 2 * 4096 + 256 * 4096 + 256 + 257 * expert
    head = 129280 * 4096 + 4096 + 4 * 4 * 4096 + 4 + 1      # output, final norm, hc_head
    layers = sum(moe.layer_params(m, i) for i in range(43))
    assert m.params == layers + 129280 * 4096 + head


def test_mtp_layer_uses_its_own_ratio():
    """The MTP layer's compress_ratios entry (0: window only) sets its shape."""
    m = presets()["deepseek-v4-flash"]
    assert moe.mtp_layer_ids(m) == [43]
    assert dsv4.ratio(m, 43) == 0 and dsv4.ratio(m, 42) == 4


def _inline(**over):
    m = presets()["deepseek-v4-flash"].model_dump(exclude_none=True)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(m.get(k), dict):
            m[k] = {**m[k], **v}
        else:
            m[k] = v
    return m


@pytest.mark.parametrize(("over", "needle"), [
    ({"attention": {"compress_ratios": [0, 4]}}, "compress_ratios has 2 entries"),
    ({"attention": {"compress_ratios": [1] * 43}}, "0 (window only) or a ratio >= 2"),
    ({"attention": {"o_groups": 7}}, "o_groups 7 must divide heads 64"),
    ({"attention": {"index_topk": None}}, "kind dsv4 needs index_topk"),
    ({"attention": {"qk_rope_head_dim": 512}}, "must be below head_dim"),
    ({"attention": {"kind": "mla", "kv_lora_rank": 512, "qk_nope_head_dim": 128,
                    "v_head_dim": 128}}, "belong to kind dsv4"),
    ({"moe": {"hash_layers": 50}}, "hash_layers 50 exceeds"),
    ({"hyper_connections": {"copies": 1}}, "hyper_connections.copies"),
    ({"sliding_window": {"size": 128}}, "its own window"),
])
def test_bad_keys_are_refused(over, needle):
    with pytest.raises(ClusterSimError, match="inline model") as exc:
        resolve(_inline(**over))
    assert needle in str(exc.value)


def test_hyper_connections_need_dsv4():
    m = presets()["deepseek-v3"].model_dump(exclude_none=True)
    with pytest.raises(ClusterSimError, match="attention kind dsv4 only"):
        resolve({**m, "hyper_connections": {"copies": 4}})


def test_muon_sees_every_attention_matrix():
    """Muon's matrices of a DSV4 layer (tp 1) hold exactly the GEMM weights one token
    multiplies there, attention and mHC (the MoE block apart)."""
    from workloads.muon import _dsv4_attention
    m = presets()["deepseek-v4-flash"]
    for i in (0, 2, 3):
        numel = sum(r * c for r, c in _dsv4_attention(m, i, 1))
        assert numel == dsv4.attention_matmul_params(m, i) + dsv4.hc_matmul_params(m)


def test_pipeline_sends_carry_every_copy():
    """mHC widens the residual stream to 4 x 4096: a stage boundary moves all of it
    (DeepSeek-V4 report 3.5.2: "increases ... communication volume between pipeline
    stages"): 2 bytes x 4096 tokens x 16384 / tp."""
    from workloads.parallel import ParallelPlan
    from workloads.training import p2p_bytes
    m = presets()["deepseek-v4-flash"]
    plan = ParallelPlan(tp=1, pp=4, dp=1, global_batch=4, micro_batch=1)
    assert m.residual_width == 16384
    assert p2p_bytes(m, plan) == 2 * 4096 * 16384
