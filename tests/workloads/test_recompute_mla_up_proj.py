"""Megatron-Core's recompute_modules [mla_up_proj] and [mlp] (``recompute: mla_up_proj``,
``mlp``, ``mla_up_proj_mlp``): before a layer's backward MLA's query / key-value up
projections and RoPE, and a dense layer's MLP, run again. Sizes by hand on a small MLA MoE
model."""

import pytest

from hw_models.errors import InfeasiblePlanError
from workloads.graph import CommGroup
from workloads.layers import LayerContext, layer_recompute
from workloads.model import ModelSpec
from workloads.moe_layers import layer_forward_at, layer_recompute_at, make_context
from workloads.moe_memory import layer_activation_bytes
from workloads.parallel import ParallelPlan, validate

H, S, F, FFN = 256, 128, 512, 1024
HEADS, QL, KVL, NOPE, ROPE, V = 8, 96, 64, 32, 16, 32
MLA = {"kind": "mla", "q_lora_rank": QL, "kv_lora_rank": KVL, "qk_nope_head_dim": NOPE,
       "qk_rope_head_dim": ROPE, "v_head_dim": V}
MOE = {"experts": 8, "top_k": 2, "expert_ffn_hidden": F, "dense_layers": 1}


def _model(attention=MLA) -> ModelSpec:
    return ModelSpec(layers=4, hidden=H, heads=HEADS, vocab=1000, seq_len=S, ffn_hidden=FFN,
                     activation="swiglu", norm="rmsnorm", bias=False, rope=True,
                     tied_embeddings=False, moe=MOE, attention=attention)


def _ctx() -> LayerContext:
    # micro-batch 2, tp 1: 256 tokens
    return LayerContext(_model(), 2, 1, False, "bf16", CommGroup((0,), "tp"),
                        moe=make_context((0, 1), (0,), "alltoall", 1.0, 8))


T = 2 * S
Q_UP = 2 * T * HEADS * (NOPE + ROPE) * QL          # [T, q_lora] x [q_lora, heads x qk_head]
KV_UP = 2 * T * HEADS * (NOPE + V) * KVL           # [T, kv_lora] x [kv_lora, heads x (nope + v)]
ROPE_BYTES = 2 * 2 * T * (HEADS + 1) * ROPE        # read + write of Q's and the shared K's rope part


def test_mla_up_proj_reruns_the_two_up_projections_and_rope():
    ops = layer_recompute_at(_ctx(), 1, "mla_up_proj")
    assert [o.name for o in ops] == ["mla_q_up", "mla_kv_up", "rope"]
    assert [o.flops for o in ops[:2]] == [Q_UP, KV_UP]
    assert ops[2].bytes == ROPE_BYTES
    # the same kernels as the forward runs them (the down projections are not re-run)
    fwd = {o.name: o for o in layer_forward_at(_ctx(), 1)}
    assert all(o.flops == fwd[o.name].flops for o in ops[:2])
    assert "mla_q_down" in fwd and "mla_kv_down" in fwd


def test_mlp_reruns_the_dense_layers_mlp_only():
    ctx = _ctx()
    assert layer_recompute_at(ctx, 1, "mlp") == []          # a MoE layer: nothing
    ops = layer_recompute_at(ctx, 0, "mlp")                  # the dense layer
    assert [o.name for o in ops] == ["mlp_up", "activation", "mlp_down"]
    assert [o.flops for o in ops if o.name != "activation"] == [2 * T * 2 * FFN * H, 2 * T * H * FFN]
    both = [o.name for o in layer_recompute_at(ctx, 0, "mla_up_proj_mlp")]
    assert both == ["mla_q_up", "mla_kv_up", "rope", "mlp_up", "activation", "mlp_down"]
    assert [o.name for o in layer_recompute(ctx, "mlp")] == ["mlp_up", "activation", "mlp_down"]


def test_memory_drops_q_k_v_and_the_dense_mlp_activations():
    m = _model()
    def stored(i, recompute):
        plan = ParallelPlan(tp=1, pp=1, dp=2, ep=2, micro_batch=2, global_batch=16, recompute=recompute)
        return layer_activation_bytes(m, i, plan, 1.0)
    qkv = 2 * T * HEADS * (2 * (NOPE + ROPE) + V)
    assert stored(1, "none") - stored(1, "mla_up_proj") == pytest.approx(qkv)
    assert stored(0, "none") - stored(0, "mlp") == pytest.approx(2 * T * 2 * FFN + 2 * T * FFN)
    assert stored(0, "none") - stored(0, "mla_up_proj_mlp") == pytest.approx(qkv + 6 * T * FFN)


def test_mla_up_proj_needs_mla():
    plan = ParallelPlan(tp=1, pp=1, dp=1, micro_batch=1, global_batch=1, recompute="mla_up_proj")
    with pytest.raises(InfeasiblePlanError, match="no MLA"):
        validate(plan, _model(attention=None), 1)
    validate(plan, _model(), 1)


def test_mlp_reruns_a_hybrid_models_mlp_sublayers_only():
    """A hybrid model (pattern M-*E): [mlp] re-runs and frees the MLP sub-layer ``-`` only
    (Megatron-Core builds it as a transformer layer); fc1 output and activation output
    of a non-gated MLP, 2 x T x FFN bytes each, are not kept."""
    m = ModelSpec(layers=4, hidden=H, heads=HEADS, vocab=1000, seq_len=S, ffn_hidden=FFN,
                  activation="squared_relu", norm="rmsnorm", bias=False, rope=False,
                  tied_embeddings=False, hybrid_pattern="M-*E",
                  mamba={"heads": 8, "head_dim": 32, "state_dim": 16, "groups": 1},
                  moe={"experts": 8, "top_k": 2, "expert_ffn_hidden": F})
    ctx = LayerContext(m, 2, 1, False, "bf16", CommGroup((0,), "tp"),
                       moe=make_context((0, 1), (0,), "alltoall", 1.0, 8))
    assert [layer_recompute_at(ctx, i, "mlp") for i in (0, 2, 3)] == [[], [], []]
    ops = layer_recompute_at(ctx, 1, "mlp")
    assert [o.name for o in ops] == ["mlp_up", "activation", "mlp_down"]
    assert [o.flops for o in ops if o.name != "activation"] == [2 * T * FFN * H, 2 * T * H * FFN]

    def stored(i, recompute):
        plan = ParallelPlan(tp=1, pp=1, dp=2, ep=2, micro_batch=2, global_batch=16, recompute=recompute)
        return layer_activation_bytes(m, i, plan, 1.0)
    assert stored(1, "none") - stored(1, "mlp") == pytest.approx(2 * T * FFN + 2 * T * FFN)
    assert all(stored(i, "none") == stored(i, "mlp") for i in (0, 2, 3))


def _dsv4_ctx() -> LayerContext:
    from workloads.model import presets
    # deepseek-v4-flash, micro-batch 1, tp 1: 4096 tokens
    return LayerContext(presets()["deepseek-v4-flash"], 1, 1, False, "bf16", CommGroup((0,), "tp"),
                        moe=make_context(tuple(range(64)), (0,), "alltoall", 1.0, 64))


def test_dsv4_mla_up_proj_reruns_the_query_up_and_kv_projections():
    """DeepSeek-V4 (DSv4HybridSelfAttention: qkv_up_proj_and_rope_apply under the
    checkpoint): the query up projection (q_lora 1024 -> 64 heads x 512) and the shared KV
    projection (4096 -> 512), their norms and RoPE re-run; the query down projection not."""
    t, ql, heads, hd, h = 4096, 1024, 64, 512, 4096
    ops = layer_recompute_at(_dsv4_ctx(), 5, "mla_up_proj")
    assert [o.name for o in ops] == ["dsv4_q_up", "dsv4_kv_proj", "dsv4_q_scale_rope", "dsv4_kv_norm_rope"]
    assert [o.flops for o in ops[:2]] == [2 * t * ql * heads * hd, 2 * t * h * hd]
    fwd = {o.name: o for o in layer_forward_at(_dsv4_ctx(), 5)}
    assert all(o.flops == fwd[o.name].flops for o in ops[:2]) and "dsv4_q_down" in fwd


def test_dsv4_mla_up_proj_drops_the_queries_and_the_kv_entry():
    from workloads.model import presets
    m, t = presets()["deepseek-v4-flash"], 4096
    def stored(recompute):
        plan = ParallelPlan(tp=1, pp=1, dp=64, ep=64, micro_batch=1, global_batch=64, recompute=recompute)
        return layer_activation_bytes(m, 5, plan, 1.0)
    # 16-bit queries (64 heads x 512) and the 512-wide KV entry before and after its norm
    assert stored("none") - stored("mla_up_proj") == pytest.approx(2 * t * 64 * 512 + 2 * 2 * t * 512)
    validate(ParallelPlan(tp=1, pp=1, dp=64, ep=64, micro_batch=1, global_batch=64,
                          recompute="mla_up_proj"), m, 64)
