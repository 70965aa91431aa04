"""Expert fc2 biases (gpt-oss): Megatron-Core's TEGroupedMLP adds each local expert's
bias, weighted by the routing probability, in PyTorch after the grouped GEMM; the fused
grouped MLP (``moe.fused_mlp``) and bias-free models have no such kernels. Sizes by hand."""

from workloads.graph import CommGroup
from workloads.layers import LayerContext
from workloads.model import ModelSpec
from workloads.moe_layers import make_context, moe_backward, moe_forward

H, E, F, S = 256, 8, 512, 128
ROWS = 2 * S * 2                     # micro-batch 2 x 128 tokens, top-2: 512 routed rows
TOTAL = 6 * 2 * ROWS * H             # 6 e r h bytes each way (forward, backward)


def _ctx(bias: bool, fused: bool = False) -> LayerContext:
    model = ModelSpec(layers=2, hidden=H, heads=8, vocab=1000, seq_len=S, ffn_hidden=1024,
                      activation="swiglu", norm="rmsnorm", bias=bias, rope=True,
                      tied_embeddings=False, moe={"experts": E, "top_k": 2, "expert_ffn_hidden": F})
    # ep 2: 4 local experts, balanced routing
    return LayerContext(model, 2, 1, False, "bf16", CommGroup((0,), "tp"),
                        moe=make_context((0, 1), (0,), "alltoall", 1.0, 8, fused_mlp=fused))


def _bias_ops(ops):
    return [o for o in ops if getattr(o, "name", "").startswith(("expert_bias", "expert_prob"))]


def test_forward_adds_each_experts_bias_then_concatenates():
    ops = _bias_ops(moe_forward(_ctx(bias=True)))
    assert [o.name for o in ops] == ["expert_bias"] * 4 + ["expert_bias_cat"]
    assert [o.bytes for o in ops] == [4 * 2 * ROWS * H / 4] * 4 + [2 * 2 * ROWS * H]
    assert sum(o.bytes for o in ops) == TOTAL


def test_backward_reduces_the_bias_and_probability_gradients_per_expert():
    ops = _bias_ops(moe_backward(_ctx(bias=True)))
    assert [o.name for o in ops] == ["expert_bias_grad", "expert_prob_grad"] * 4
    assert sum(o.bytes for o in ops) == TOTAL


def test_fused_grouped_mlp_and_bias_free_models_add_nothing():
    for ctx in (_ctx(bias=True, fused=True), _ctx(bias=False)):
        assert not _bias_ops(moe_forward(ctx)) and not _bias_ops(moe_backward(ctx))
