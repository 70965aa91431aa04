"""Sequence-parallel costs of Megatron / Transformer Engine linears, by hand: the backward
all-gather of the saved input shard, TE's quantized output-gradient gathers and the
current-scaling / NVFP4 amax all-reduce over the TP group."""

import pytest

from workloads import fp8, training
from workloads.graph import Collective, CommGroup, Compute, Overlap
from workloads.layers import LayerContext, layer_backward, layer_forward
from workloads.model import ModelSpec
from workloads.parallel import ParallelPlan
from workloads.stage_ops import sp_backward_gathers

# a tiny layer: hidden 64, 2 sequences of 64 tokens (T = 128), TP 4
M = ModelSpec(layers=2, hidden=64, heads=4, vocab=256, seq_len=64)
T, H = 128, 64
TP = CommGroup((0, 1, 2, 3), "tp")


def ctx(sp=True, megatron=True):
    return LayerContext(M, 2, 4, sp, "bf16", TP, megatron_linears=megatron)


def regathers(ops):
    return [o for o in ops if isinstance(o, Overlap) and o.name.endswith("_sp_regather")]


def test_bf16_backward_regathers_each_column_parallel_input_beside_its_dgrad():
    got = regathers(sp_backward_gathers(ctx(), layer_backward(ctx())))
    assert [o.main[0].name for o in got] == ["mlp_up_dgrad", "qkv_dgrad"]
    for o in got:
        ag = o.hidden[0]
        # the gathered (T, hidden) BF16 input: 2 x 128 x 64 bytes over the TP group
        assert ag.kind == "all_gather" and ag.bytes == 2 * T * H == 16384 and ag.group == TP
        assert o.concurrent and o.comm_sms == 0          # NCCL async handle beside the dgrad


@pytest.mark.parametrize("recipe, per_elem", [("delayed", 1.0), ("tensorwise", 1.0),
                                              ("mxfp8", 1 + 1 / 32), ("blockwise", 1 + 4 / 128),
                                              ("nvfp4", 0.5 + 1 / 16)])
def test_quantized_regather_moves_the_wgrad_copy(recipe, per_elem):
    got = regathers(sp_backward_gathers(ctx(), layer_backward(ctx()), recipe))
    assert [o.hidden[0].bytes for o in got] == pytest.approx([per_elem * T * H] * 2)


def test_no_regather_without_sp_or_with_dtensor_tp():
    for c in (ctx(sp=False), ctx(megatron=False)):
        assert not regathers(sp_backward_gathers(c, layer_backward(c)))


def test_ring_regather_is_a_bulk_overlap_holding_its_sms():
    got = regathers(sp_backward_gathers(ctx(), layer_backward(ctx()), mode="ring"))
    assert {o.main[0].name: o.comm_sms for o in got} == {"mlp_up_dgrad": 2, "qkv_dgrad": 4}
    # bulk: max(H, M + H k / sms); 1 ms GEMM beside a 0.5 ms gather on 4 of 132 SMs
    o = got[1]
    assert o.time(1e-3, 0.5e-3, 132) == pytest.approx(1e-3 + 0.5e-3 * 4 / 132)
    assert o.time(1e-3, 2e-3, 132) == pytest.approx(2e-3)


def _grad_gathers(ops):
    return {o.name: o.bytes for o in ops if isinstance(o, Collective) and o.kind == "all_gather"}


@pytest.mark.parametrize("recipe, ring, per_elem", [
    ("delayed", False, 1.0), ("tensorwise", False, 1.0),
    ("mxfp8", False, 2 * (1 + 1 / 32)), ("mxfp8", True, 1 + 1 / 32),
    ("nvfp4", False, 2 * (0.5 + 1 / 16))])
def test_output_gradient_gathers_in_the_recipe_precision(recipe, ring, per_elem):
    ops = fp8.rewrite(layer_backward(ctx()), recipe, te_gathers=True, ring=ring)
    assert _grad_gathers(ops) == {"tp_mlp_out_bwd": pytest.approx(per_elem * T * H),
                                  "tp_attn_out_bwd": pytest.approx(per_elem * T * H)}
    # the forward inputs' gathers move the row-wise copy with its scales
    fwd = _grad_gathers(fp8.rewrite(layer_forward(ctx()), recipe, te_gathers=True, ring=ring))
    assert fwd == {"tp_ag_attn": pytest.approx(fp8.te_gather_bytes(recipe, 1) * T * H),
                   "tp_ag_mlp": pytest.approx(fp8.te_gather_bytes(recipe, 1) * T * H)}
    # without TE's gathers (torchao / DTensor) the rewrite leaves them at 2 bytes
    assert set(_grad_gathers(fp8.rewrite(layer_backward(ctx()), recipe)).values()) == {2 * T * H}


@pytest.mark.parametrize("recipe, nbytes", [("tensorwise", 4.0), ("nvfp4", 8.0),
                                            ("delayed", None), ("mxfp8", None)])
def test_amax_all_reduce_before_each_gathered_quantize(recipe, nbytes):
    fwd = fp8.rewrite(layer_forward(ctx()), recipe, amax_group=TP)
    bwd = fp8.rewrite(layer_backward(ctx()), recipe, amax_group=TP)
    ars = [o for o in fwd + bwd if isinstance(o, Collective) and o.kind == "all_reduce"]
    if nbytes is None:
        assert not ars
        return
    # qkv and mlp_up inputs forward, attn_proj and mlp_down output gradients backward
    assert [o.name for o in ars] == ["qkv_amax_all_reduce", "mlp_up_amax_all_reduce",
                                     "mlp_down_dgrad_amax_all_reduce",
                                     "attn_proj_dgrad_amax_all_reduce"]
    assert all(o.bytes == nbytes and o.group == TP for o in ars)
    # each runs before the gather of the tensor it scales
    i = fwd.index(ars[0])
    assert isinstance(fwd[i + 1], Collective) and fwd[i + 1].kind == "all_gather"


def test_stage_ops_price_all_three_for_te_not_for_dtensor():
    plan = ParallelPlan(tp=4, pp=1, dp=1, micro_batch=2, global_batch=2, sequence_parallel=True)

    def bwd(**kw):
        opts = training.TrainingOptions(fp8_recipe="tensorwise", **kw)
        return training.stage_layer_ops(M, plan, opts, 0)[1].bwd

    te, dt = bwd(), bwd(dtensor_tp=True)
    assert len(regathers(te)) == 2 and not regathers(dt)
    assert sum(isinstance(o, Collective) and o.kind == "all_reduce" for o in te) == 2
    assert not any(isinstance(o, Collective) and o.kind == "all_reduce" for o in dt)
    ag = [o for o in te if isinstance(o, Compute) is False and getattr(o, "name", "") == "tp_mlp_out_bwd"]
    assert ag and ag[0].bytes == T * H                   # FP8 output gradient: 1 byte


def _casts(ops):
    return {o.name: o.bytes for o in ops if isinstance(o, Compute) and "_cast_" in o.name}


@pytest.mark.parametrize("recipe", ["mxfp8", "blockwise", "nvfp4"])
def test_te_quantizes_the_gathered_shard_one_tp_th_of_the_whole(recipe):
    # the same ops, with and without TE's gathers: each gathered GEMM input's cast (qkv,
    # mlp_up inputs; attn_proj, mlp_down output gradients) shrinks to 1/TP, others stay
    for build in (layer_forward, layer_backward):
        whole = _casts(fp8.rewrite(build(ctx()), recipe))
        shard = _casts(fp8.rewrite(build(ctx()), recipe, te_gathers=True))
        assert set(whole) == set(shard)
        for name, nbytes in whole.items():
            gathered = name.split(f"_{recipe}_")[0] in fp8.SP_GATHERED
            assert shard[name] == pytest.approx(nbytes / 4 if gathered else nbytes)


def test_fp8_quantizes_the_shard_row_wise_and_transposes_the_gathered_copy():
    fwd = _casts(fp8.rewrite(layer_forward(ctx()), "tensorwise", te_gathers=True))
    bwd = _casts(fp8.rewrite(layer_backward(ctx()), "delayed", te_gathers=True))
    # current scaling, qkv input (T x H): shard of T H / 4 elements read for the amax (2)
    # and the cast (2), written in FP8 (1); the gathered copy transposed (read 1, write 1)
    assert fwd["qkv_tensorwise_cast_input"] == pytest.approx(T * H / 4 * 5 + T * H * 2)
    # before: the whole tensor, 2 + 2 + 2 x 1 bytes an element
    assert _casts(fp8.rewrite(layer_forward(ctx()), "tensorwise"))[
        "qkv_tensorwise_cast_input"] == 6 * T * H
    # delayed scaling, mlp_down's output gradient (T x H): no amax pass
    assert bwd["mlp_down_dgrad_delayed_cast_grad"] == pytest.approx(T * H / 4 * 3 + T * H * 2)
    # a cast not after a gather (mlp_up's output gradient, T x ffn / TP) is unchanged
    assert bwd["mlp_up_dgrad_delayed_cast_grad"] == _casts(fp8.rewrite(
        layer_backward(ctx()), "delayed"))["mlp_up_dgrad_delayed_cast_grad"]
