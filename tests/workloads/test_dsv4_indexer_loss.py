"""The DSA indexer's KL training loss on DeepSeek-V4 CSA layers (``attention.indexer_loss``):
its FLOPs and bytes by hand on the tiny configuration of test_dsv4_flops.py."""

from __future__ import annotations

import pytest

from hw_models.errors import ClusterSimError
from workloads import dsv4
from workloads.graph import CommGroup
from workloads.layer_dsv4 import attn_backward, attn_forward
from workloads.layers import LayerContext
from workloads.model import ModelSpec, presets, resolve

from .test_dsv4_flops import TINY


def _ctx(mode: str, micro_batch: int = 1) -> LayerContext:
    m = ModelSpec(**TINY | {"attention": TINY["attention"] | {"indexer_loss": mode}})
    return LayerContext(m, micro_batch, 1, False, "bf16", CommGroup((0,), "tp"))


def _ops(ops) -> dict:
    return {o.name: o for o in ops}


def test_sparse_loss_by_hand():
    """s 64, ratio 4, top-4: 224 selected pairs (test_dsv4_flops), 64 x 4 = 256 top-k slots.
    Target: 4 heads x q.k of 32 per pair, 2 x 4 x 224 x 32 = 57344 FLOPs. Indexer backward:
    3 x 2 x 224 pairs x 2 heads x 8 = 21504. Predict (clamp, long, gather, >= 0, where,
    softmax): 8 + 12 + 16 + 5 + 9 + 8 = 58 bytes a slot; KL (2 clamps, 2 logs, subtract,
    multiply, row sum, mask): 32 + 24 + 4 + 5 + 1 = 66; the two fp32 clones 16; the teacher's
    logaddexp of (64, 4) fp32 LSE and sink: 2 x 4 x 256 = 2048 bytes. Backward: the saved
    gradients (q 64 x 2 x 8, k 16 x 8, weights 64 x 2; 16-bit) read and written:
    2 x 2 x 1280 = 5120 bytes."""
    fwd = _ops(attn_forward(_ctx("sparse"), 4))
    assert fwd["dsv4_index_loss_target"].flops == 57344
    assert fwd["dsv4_index_loss_indexer_bwd"].flops == 21504
    assert fwd["dsv4_index_loss_predict"].bytes == 58 * 256
    assert fwd["dsv4_index_loss_kl"].bytes == 66 * 256
    assert fwd["dsv4_index_loss_clone"].bytes == 16 * 256
    assert fwd["dsv4_index_loss_teacher_lse"].bytes == 2048
    bwd = _ops(attn_backward(_ctx("sparse"), 4))
    assert bwd["dsv4_index_loss_grad_scale"].bytes == 5120


def test_dense_loss_covers_every_causal_entry():
    """Dense: 64^2 / 8 = 512 causal compressed pairs, 2 x 4 x 512 x 32 = 131072 FLOPs for the
    teacher's LSE and again for the target; 64 x 16 = 1024 slots; indexer backward
    3 x 2 x 512 x 16 = 49152."""
    fwd = _ops(attn_forward(_ctx("dense"), 4))
    assert fwd["dsv4_index_loss_teacher_full_lse"].flops == 131072
    assert fwd["dsv4_index_loss_target"].flops == 131072
    assert fwd["dsv4_index_loss_indexer_bwd"].flops == 49152
    assert fwd["dsv4_index_loss_kl"].bytes == 66 * 1024


def test_micro_batch_two_copies_the_teacher_inputs():
    """b 2: the (s, b) -> (b, s) permutes copy the query (2 x 64 x 4 x 32 x 2 bytes), the 16
    compressed entries a sequence (2 x 16 x 32 x 2) and the LSE (2 x 64 x 4 x 4), read and
    written, beside the logaddexp (2 x 4 x 512)."""
    lse = _ops(attn_forward(_ctx("sparse", 2), 4))["dsv4_index_loss_teacher_lse"]
    assert lse.bytes == 2 * 4 * 512 + 2 * (2 * 2 * 64 * 4 * 32 + 2 * 2 * 16 * 32 + 4 * 2 * 64 * 4)


def test_without_the_loss_the_indexer_has_no_score_backward():
    """Off (Megatron-Core's default): no loss kernels, the indexer's scores no backward and
    its projections (detached inputs) a weight gradient only; HCA and window layers never
    run the loss."""
    off = [o.name for o in attn_forward(_ctx("none"), 4) + attn_backward(_ctx("none"), 4)]
    assert not [n for n in off if "index_loss" in n or n == "dsv4_index_scores_bwd"]
    assert "dsv4_index_q_wgrad" in off and "dsv4_index_q_dgrad" not in off
    assert "dsv4_q_up_dgrad" in off
    for r in (0, 16):
        names = [o.name for o in attn_forward(_ctx("sparse"), r) + attn_backward(_ctx("sparse"), r)]
        assert not [n for n in names if "index_loss" in n]


def test_the_loss_keeps_the_indexer_gradients():
    """Saved from forward to backward on a CSA layer of 64 tokens: 2 x (64 x 2 x 8 + 16 x 8
    + 64 x 2) = 2560 bytes more; none on an HCA layer."""
    on, off = _ctx("sparse").model, _ctx("none").model
    assert dsv4.activation_bytes(on, 1, 64, 1, 1) - dsv4.activation_bytes(off, 1, 64, 1, 1) == 2560
    assert dsv4.activation_bytes(on, 2, 64, 1, 1) == dsv4.activation_bytes(off, 2, 64, 1, 1)


@pytest.mark.parametrize(("model", "over", "needle"), [
    ("deepseek-v4-flash", "yes", "indexer_loss"),
    ("deepseek-v3", "sparse", "indexer_loss belongs to kind dsv4, not mla"),
])
def test_bad_values_are_refused(model, over, needle):
    m = presets()[model].model_dump(exclude_none=True)
    with pytest.raises(ClusterSimError) as exc:
        resolve({**m, "attention": m["attention"] | {"indexer_loss": over}})
    assert needle in str(exc.value)


def test_presets_leave_it_off():
    assert presets()["deepseek-v4-flash"].attention.indexer_loss == "none"
