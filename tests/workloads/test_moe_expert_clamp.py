"""Clamped gated activation (gpt-oss, ``activation_clamp``): Megatron-Core's
``weighted_bias_quick_geglu_impl`` clamps the two halves of the fc1 output and
concatenates them in PyTorch before its fused kernel, then builds its offset tensor with a
synchronizing copy from the host; PyTorch's clamp backward and the chunk's gradient
concatenation run unfused too. The fused grouped MLP and models without a clamp have
none of it. Sizes by hand."""

from workloads.graph import CommGroup
from workloads.host_launch import is_sync, launches
from workloads.layers import LayerContext
from workloads.model import ModelSpec
from workloads.moe_layers import layer_recompute_at, make_context, moe_backward, moe_forward

H, E, F, S = 256, 8, 512, 128
ROWS = 2 * S * 2                     # micro-batch 2 x 128 tokens, top-2: 512 routed rows
RF = ROWS * F                        # elements of one half of the fc1 output (bf16: 2 bytes)


def _ctx(clamp: float | None, fused: bool = False) -> LayerContext:
    model = ModelSpec(layers=2, hidden=H, heads=8, vocab=1000, seq_len=S, ffn_hidden=1024,
                      activation="swiglu", activation_clamp=clamp, norm="rmsnorm", bias=True,
                      rope=True, tied_embeddings=False,
                      moe={"experts": E, "top_k": 2, "expert_ffn_hidden": F})
    return LayerContext(model, 2, 1, False, "bf16", CommGroup((0,), "tp"),
                        moe=make_context((0, 1), (0,), "alltoall", 1.0, 8, fused_mlp=fused))


def _clamp_ops(ops):
    return [o for o in ops if getattr(o, "name", "").startswith(("expert_clamp", "expert_act_offset"))]


def _names(ops):
    return [getattr(o, "name", "") for o in ops]


def test_forward_clamps_both_halves_concatenates_then_syncs_before_the_activation():
    ops = moe_forward(_ctx(7.0))
    clamp = _clamp_ops(ops)
    assert _names(clamp) == ["expert_clamp_gate", "expert_clamp_linear", "expert_clamp_cat",
                             "expert_act_offset_h2d"]
    # each clamp reads and writes one half (2 + 2 bytes per element), the cat both halves
    assert [o.bytes for o in clamp[:3]] == [4 * RF, 4 * RF, 8 * RF]
    names = _names(ops)
    last_fc1 = max(i for i, n in enumerate(names) if n == "expert_fc1")
    act = names.index("expert_activation")
    assert names[last_fc1 + 1] == "expert_clamp_gate"
    assert names[act - 2] == "expert_act_offset_h2d" and is_sync(ops[act - 1])
    assert sum(map(is_sync, ops)) == 2          # the dispatcher's, and the offset copy's


def test_backward_is_nine_unfused_kernels_of_11e_plus_8_bytes_per_element():
    ops = moe_backward(_ctx(7.0))
    (clamp,) = _clamp_ops(ops)
    # gate: le (2 + 1), where (1 + 2 + 2); linear: ge, le (3 each), logical_and_ (3),
    # where (5); the chunk's gradient cat (4 + 4 over both halves): 30 bytes per element
    assert clamp.bytes == (11 * 2 + 8) * RF == 30 * RF
    assert launches(clamp) == 9
    names = _names(ops)
    assert names.index("expert_activation_bwd") + 1 == names.index("expert_clamp_bwd")
    assert not any(map(is_sync, ops))


def test_activation_recompute_clamps_and_syncs_again():
    ops = layer_recompute_at(_ctx(7.0), 0, "norm_moe_act")
    assert _names(_clamp_ops(ops)) == ["expert_clamp_gate", "expert_clamp_linear",
                                       "expert_clamp_cat", "expert_act_offset_h2d"]
    assert sum(map(is_sync, ops)) == 1 and _names(ops)[-1] == "expert_activation"


def test_fused_grouped_mlp_and_unclamped_models_add_nothing():
    for ctx in (_ctx(7.0, fused=True), _ctx(None)):
        fwd, bwd = moe_forward(ctx), moe_backward(ctx)
        assert not _clamp_ops(fwd) and not _clamp_ops(bwd)
        assert sum(map(is_sync, fwd)) == 1
