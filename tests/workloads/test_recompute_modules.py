"""Megatron-Core's recompute_modules as a list (``workload.recompute_modules``): the extra
forward work each module re-runs before the backward and the activation memory it frees,
by hand on a tiny MoE model and on the Nemotron 3 Nano hybrid pattern; the module-set
modes give the same results as their lists; names are validated."""

import pytest

from workloads import mamba
from workloads.graph import Collective, CommGroup
from workloads.layers import LayerContext, layer_recompute
from workloads.memory import activation_bytes_per_layer
from workloads.model import ModelSpec, presets
from workloads.moe_layers import layer_recompute_at, make_context
from workloads.moe_memory import layer_activation_bytes
from workloads.parallel import RECOMPUTE_MODULES, ParallelPlan, plan_recompute

H, V, E, F, SF, FFN, S = 256, 1000, 8, 512, 384, 1024, 128
MOE = {"experts": E, "top_k": 2, "expert_ffn_hidden": F, "dense_layers": 1,
       "shared_experts": 1, "shared_ffn_hidden": SF}
TOKENS, ROUTED = 2 * S, 2 * S * 2      # micro-batch 2; top-2, balanced over ep 2


def _model() -> ModelSpec:
    return ModelSpec(layers=4, hidden=H, heads=8, vocab=V, seq_len=S, ffn_hidden=FFN,
                     activation="swiglu", norm="rmsnorm", bias=False, rope=True,
                     tied_embeddings=False, moe=MOE)


def _ctx(model=None) -> LayerContext:
    # micro-batch 2, tp 1, ep 2 (experts 0-3 and 4-7): 256 tokens, 512 routed copies per rank
    return LayerContext(model or _model(), 2, 1, False, "bf16", CommGroup((0,), "tp"),
                        moe=make_context((0, 1), (0,), "alltoall", 1.0, 8))


def _flops(ops) -> float:
    return sum(getattr(o, "flops", 0.0) for o in ops)


def _plan(recompute) -> ParallelPlan:
    return ParallelPlan(tp=1, pp=1, dp=2, ep=2, micro_batch=2, global_batch=16, recompute=recompute)


# ----------------------------------------------------------------------------- compute

def test_core_attn_reruns_the_attention_kernel():
    """8 heads of 32 over 2 x 128 tokens, causal: 2 x 16 x 128^2/2 x (32 + 32) FLOPs."""
    ops = layer_recompute_at(_ctx(), 1, ("core_attn",))
    assert [o.name for o in ops] == ["flash_attn_fwd"]
    assert ops[0].flops == 2 * 16 * S * S / 2 * 64
    assert _flops(layer_recompute(_ctx(), ("core_attn",))) == 2 * 16 * S * S / 2 * 64


def test_moe_reruns_router_all_to_alls_experts_and_shared_experts():
    """The whole MoE block: router 2 x 256 x E x H, routed fc1 / fc2 2 x 512 x (2F + F) x H,
    shared fc1 / fc2 2 x 256 x (2SF + SF) x H; the dispatch and combine all-to-alls run
    again. A dense layer has no MoE block."""
    ops = layer_recompute_at(_ctx(), 1, ("moe",))
    router = 2 * TOKENS * E * H
    routed = 2 * ROUTED * 3 * F * H
    shared = 2 * TOKENS * 3 * SF * H
    assert _flops(ops) == router + routed + shared
    assert [o.name for o in ops if isinstance(o, Collective)] == ["ep_all_to_all_dispatch",
                                                                   "ep_all_to_all_combine"]
    assert layer_recompute_at(_ctx(), 0, ("moe",)) == []


def test_moe_with_moe_act_runs_the_activation_once_more():
    """moe_act's output-discarding checkpoint inside the re-run MoE block discards it again:
    one more SwiGLU over the 512 routed rows (reads gate and up, writes one: 3 x 2 x 512 F)."""
    both = layer_recompute_at(_ctx(), 1, ("moe", "moe_act"))
    moe = layer_recompute_at(_ctx(), 1, ("moe",))
    extra = both[len(moe):]
    assert [o.name for o in extra] == ["expert_activation"]
    assert extra[0].bytes == 3 * 2 * ROUTED * F


def test_shared_experts_rerun_alone():
    ops = layer_recompute_at(_ctx(), 1, ("shared_experts",))
    assert [o.name for o in ops] == ["shared_fc1", "shared_activation", "shared_fc2"]
    assert _flops(ops) == 2 * TOKENS * 3 * SF * H
    assert layer_recompute_at(_ctx(), 0, ("shared_experts",)) == []


@pytest.mark.parametrize("mode", sorted(RECOMPUTE_MODULES))
def test_module_set_modes_equal_their_lists(mode):
    """norm_moe_act, mlp (and with MLA mla_up_proj) give the same kernels and memory as
    the module list they name."""
    modules = RECOMPUTE_MODULES[mode]
    if "mla_up_proj" in modules:
        model = presets()["deepseek-v3"].model_copy(update={"layers": 4})
        model = model.model_copy(update={"moe": model.moe.model_copy(update={"dense_layers": 1})})
    else:
        model = _model()
    ctx = _ctx(model)
    for i in (0, 1):
        assert layer_recompute_at(ctx, i, mode) == layer_recompute_at(ctx, i, modules)
        assert (layer_activation_bytes(model, i, _plan(mode), 1.0)
                == layer_activation_bytes(model, i, _plan(modules), 1.0))
    if "mla_up_proj" not in modules:
        assert layer_recompute(ctx, mode) == layer_recompute(ctx, modules)
        assert (activation_bytes_per_layer(model, 2, 1, False, mode, flash=True)
                == activation_bytes_per_layer(model, 2, 1, False, modules, flash=True))


# ----------------------------------------------------------------------------- memory

def test_moe_keeps_only_the_blocks_input():
    """Freed per MoE layer and micro-batch: the fp32 router probabilities 4 x 256 x E, the
    routed fc1 input / output and activation output 2 x 512 x (H + 2F + F) (fc2's output is
    not kept: the probabilities multiply the activation, so the combine saves nothing), the
    shared experts' 2 x 256 x SF x 3; moe_act adds nothing on top of moe."""
    none = layer_activation_bytes(_model(), 1, _plan("none"), 1.0)
    freed = 4 * TOKENS * E + 2 * ROUTED * (H + 2 * F + F) + 2 * TOKENS * SF * 3
    assert none - layer_activation_bytes(_model(), 1, _plan(("moe",)), 1.0) == freed
    assert layer_activation_bytes(_model(), 1, _plan(("moe", "moe_act")), 1.0) == \
        layer_activation_bytes(_model(), 1, _plan(("moe",)), 1.0)
    assert none - layer_activation_bytes(_model(), 1, _plan(("shared_experts",)), 1.0) == \
        2 * TOKENS * SF * 3
    assert layer_activation_bytes(_model(), 0, _plan(("moe",)), 1.0) == \
        layer_activation_bytes(_model(), 0, _plan("none"), 1.0)


def test_core_attn_frees_what_an_unfused_kernel_stores():
    """A fused kernel stores no score matrix: core_attn frees nothing; unfused, it frees
    the softmax output (2 bytes), its dropout mask (1) and the dropout output (2) per head
    x s^2 x b, as selective does."""
    m = _model()
    for flash in (True, False):
        assert activation_bytes_per_layer(m, 2, 1, False, ("core_attn",), flash) == \
            activation_bytes_per_layer(m, 2, 1, False, "selective", flash)
    unfused = activation_bytes_per_layer(m, 2, 1, False, "none", False)
    assert unfused - activation_bytes_per_layer(m, 2, 1, False, ("core_attn",), False) == 5 * 8 * S * S * 2
    assert layer_activation_bytes(m, 1, _plan(("core_attn",)), 1.0) == \
        layer_activation_bytes(m, 1, _plan("none"), 1.0)


# ----------------------------------------------------------------------------- hybrid

def _nano_ctx():
    return LayerContext(presets()["nemotron-3-nano"], 1, 1, False, "bf16", CommGroup((0,), "tp"),
                        moe=make_context(tuple(range(8)), (0,), "alltoall", 1.0, 8))


def test_hybrid_layernorm_reruns_only_the_moe_pre_norm():
    """Nano: the Mamba (M), attention (*) and MLP norms are fused into
    TELayerNormColumnParallelLinear (IdentityOp layer norms, nothing to re-run); the MoE
    (E) sub-layer's pre-MLP TENorm re-runs: read + write 2 bytes x 8192 x 2688."""
    ctx, m = _nano_ctx(), presets()["nemotron-3-nano"]
    kinds = {mamba.kind(m, i): i for i in range(m.layers)}
    assert layer_recompute_at(ctx, kinds[mamba.MAMBA], ("layernorm",)) == []
    assert layer_recompute_at(ctx, kinds[mamba.ATTENTION], ("layernorm",)) == []
    ops = layer_recompute_at(ctx, kinds[mamba.MOE], ("layernorm",))
    assert [o.bytes for o in ops] == [2 * 2 * 8192 * 2688]
    plan = ParallelPlan(tp=1, pp=1, dp=8, ep=8, micro_batch=1, global_batch=64,
                        recompute=("layernorm",))
    base = ParallelPlan(tp=1, pp=1, dp=8, ep=8, micro_batch=1, global_batch=64)
    assert layer_activation_bytes(m, kinds[mamba.MAMBA], plan, 1.0) == \
        layer_activation_bytes(m, kinds[mamba.MAMBA], base, 1.0)
    assert layer_activation_bytes(m, kinds[mamba.MOE], base, 1.0) - \
        layer_activation_bytes(m, kinds[mamba.MOE], plan, 1.0) == 2 * 8192 * 2688


def test_hybrid_core_attn_only_in_attention_sub_layers():
    ctx, m = _nano_ctx(), presets()["nemotron-3-nano"]
    att = [i for i in range(m.layers) if mamba.kind(m, i) == mamba.ATTENTION]
    other = [i for i in range(m.layers) if mamba.kind(m, i) != mamba.ATTENTION]
    assert all([o.name for o in layer_recompute_at(ctx, i, ("core_attn",))] == ["flash_attn_fwd"]
               for i in att)
    assert all(layer_recompute_at(ctx, i, ("core_attn",)) == [] for i in other)


# ----------------------------------------------------------------------------- inputs

def test_plan_recompute_from_a_workload():
    assert plan_recompute("selective", None) == "selective"
    assert plan_recompute("none", ["moe", "layernorm"]) == ("moe", "layernorm")
    assert plan_recompute("none", []) == "none"
