"""MoE memory and kernels by hand: expert states sharded by EP (and their optimizer over
expert-DP), dispatch buffers, and the graph's GEMM FLOPs equal to the model-FLOPs formula."""

from __future__ import annotations

import pytest

from workloads import moe, moe_memory, moe_training
from workloads.graph import CommGroup, Compute
from workloads.layers import LayerContext
from workloads.memory import stage_memory
from workloads.model import presets
from workloads.moe_layers import layer_backward_at, layer_forward_at, make_context
from workloads.parallel import ParallelPlan

DS = presets()["deepseek-v3"]
LAYERS = (3,) + (4,) * 14 + (2,)


def plan(dp: int = 128, ep: int = 64) -> ParallelPlan:
    return ParallelPlan(tp=1, pp=16, dp=dp, micro_batch=1, global_batch=dp * 16, zero=1,
                        ep=ep, pipeline_layers=LAYERS)


def test_expert_states_sharded_by_ep_and_expert_dp():
    """Stage 1 holds 4 MoE layers: 4 x 256 experts x 3 x 7168 x 2048 weights, 1/64 per rank.
    Weights 2 B and fp32 gradients 4 B per parameter on every rank; the 12 B of master
    weights and Adam moments sharded over expert-DP = 128 x 1 / 64 = 2."""
    p = plan()
    experts = 4 * 256 * 3 * 7168 * 2048 / 64
    assert moe_training.stage_split(DS, p, 1)[1] == pytest.approx(experts)
    dense = moe_training.stage_split(DS, p, 1)[0]
    m = stage_memory(DS, p, 1, grad_bytes=4, flash=True)
    assert m.weights == pytest.approx(2 * (dense + experts))
    assert m.grads == pytest.approx(4 * (dense + experts))
    assert m.optimizer == pytest.approx(12 * dense / 128 + 12 * experts / 2)


def test_dispatch_buffers_and_imbalance_grow_activations():
    """One layer's dispatch + combine, send + receive: 4 x 2 B x n k h with n = 4096."""
    p = plan()
    assert moe_memory.dispatch_buffers(DS, p, 1.0) == 4 * 2 * 4096 * 8 * 7168
    base = stage_memory(DS, p, 1, 4, True).activations
    skew = stage_memory(DS, p, 1, 4, True, rank_factor=2.0).activations
    assert skew > base


def test_layer_gemm_flops_match_the_model_flops_formula():
    """Balanced EP 8, tp 1: the forward GEMMs of one MoE layer on one rank are
    2 x T x (its active GEMM weights), the backward twice that: the graph and the
    FLOPs formula (workloads.moe.flops_per_token) count the same work."""
    ctx = LayerContext(DS, 1, 1, False, "bf16", CommGroup((0,), "tp"),
                       moe=make_context(tuple(range(8)), (0,), "alltoall", 1.0, 8))
    T = DS.seq_len

    def gemm_flops(ops):
        return sum(o.flops for o in ops if isinstance(o, Compute) and o.op_class == "gemm")

    weights = moe.matmul_params(DS, 10)
    assert gemm_flops(layer_forward_at(ctx, 10)) == pytest.approx(2 * T * weights)
    assert gemm_flops(layer_backward_at(ctx, 10)) == pytest.approx(4 * T * weights)
    dense = moe.matmul_params(DS, 0)
    assert gemm_flops(layer_forward_at(ctx, 0)) == pytest.approx(2 * T * dense)


def test_moe_layers_store_no_masks_without_dropout():
    """At dropout 0 PyTorch's dropout returns its input: a MoE layer keeps no 1-byte masks
    after attention and the MLP (as dense layers, workloads/memory.py); with dropout the
    two masks are s x b x h bytes each."""
    from workloads.moe_memory import layer_activation_bytes
    p = plan()
    sbh = DS.seq_len * DS.hidden
    with_masks = layer_activation_bytes(DS, 10, p, 1.0)
    without = layer_activation_bytes(DS.model_copy(update={"dropout": False}), 10, p, 1.0)
    assert with_masks - without == 2 * sbh


def test_routed_tokens_keep_fc1_input_fc1_output_and_activation_output():
    """Per token a routed expert keeps fc1's input (h), fc1's output (2 f, gated) and the
    activation's output (f), 2 bytes each: the probabilities multiply the activation, so the
    combine keeps nothing of fc2's output. DeepSeek-V3, h 7168, f 2048, top 8, 4096 tokens:
    one more routed copy of each token (top 9) adds 2 x 4096 x (7168 + 3 x 2048) bytes."""
    from workloads.moe_memory import layer_activation_bytes
    p = plan()
    top9 = DS.model_copy(update={"moe": DS.moe.model_copy(update={"top_k": 9})})
    assert layer_activation_bytes(top9, 10, p, 1.0) - layer_activation_bytes(DS, 10, p, 1.0) == \
        2 * 4096 * (7168 + 3 * 2048)
