"""The TP reduction of a Megatron / TE linear's input gradient run beside its weight-gradient
GEMM (async_op=True before the wgrad, wait after), checked by hand on a tiny layer."""

import pytest

from workloads import training
from workloads.graph import Collective, CommGroup, Compute, Overlap
from workloads.layers import LayerContext, layer_backward
from workloads.model import ModelSpec
from workloads.parallel import ParallelPlan
from workloads.stage_ops import async_grad_reduce, sp_backward_gathers, split_wgrad

# a tiny layer: hidden 64, 2 sequences of 64 tokens (T = 128), TP 4
M = ModelSpec(layers=2, hidden=64, heads=4, vocab=256, seq_len=64)
T, H = 128, 64
TP = CommGroup((0, 1, 2, 3), "tp")


def ctx(sp=True, megatron=True, on=True):
    return LayerContext(M, 2, 4, sp, "bf16", TP, megatron_linears=megatron, async_grad_reduce=on)


def overlapped(ops):
    return [o for o in ops if isinstance(o, Overlap) and o.name.endswith("_async_grad_reduce")]


@pytest.mark.parametrize("sp, kind", [(True, "reduce_scatter"), (False, "all_reduce")])
def test_input_gradient_reduction_runs_beside_the_weight_gradient(sp, kind):
    c = ctx(sp=sp)
    got = overlapped(async_grad_reduce(c, sp_backward_gathers(c, layer_backward(c))))
    assert [(o.main[0].name, o.hidden[0].name) for o in got] == [
        ("mlp_up_wgrad", "tp_mlp_in_bwd"), ("qkv_wgrad", "tp_attn_in_bwd")]
    for o in got:
        # the (T, hidden) BF16 input gradient, reduce-scattered (SP) or all-reduced
        assert o.hidden[0].kind == kind and o.hidden[0].bytes == 2 * T * H == 16384
        assert o.concurrent and o.comm_sms == 0
        # issued with the GEMM: max(wgrad, reduction), 1 ms GEMM beside 0.4 / 1.5 ms
        assert o.time(1e-3, 0.4e-3, 132) == pytest.approx(1e-3)
        assert o.time(1e-3, 1.5e-3, 132) == pytest.approx(1.5e-3)


def test_after_the_weight_gradient_for_older_megatron_dtensor_and_userbuffers():
    for c, mode in ((ctx(on=False), "none"), (ctx(megatron=False), "none"), (ctx(), "ring"),
                    (ctx(sp=False, on=False), "none")):
        ops = layer_backward(c)
        assert async_grad_reduce(c, ops, mode) == ops


def test_split_keeps_the_reduction_with_the_input_gradient():
    c = ctx()
    plain = layer_backward(c)
    inp, wgt = split_wgrad(async_grad_reduce(c, plain))
    assert [list(inp), list(wgt)] == [list(p) for p in split_wgrad(plain)]
    assert len(overlapped(async_grad_reduce(c, plain))) == 2


def test_stage_ops_by_tp_overlap_mode_and_key():
    def ops(mode="none", **kw):
        plan = ParallelPlan(tp=4, pp=1, dp=1, micro_batch=2, global_batch=2,
                            sequence_parallel=True, tp_comm_overlap=mode)
        return training.stage_layer_ops(M, plan, training.TrainingOptions(**kw), 0)[1]

    on = ops()
    assert len(overlapped(on.bwd)) == 2
    # zero-bubble split: the reduce-scatters stay exposed in the input-gradient part
    assert not overlapped(on.bwd_input) and [o.name for o in on.bwd_weight] == [
        "mlp_down_wgrad", "mlp_up_wgrad", "attn_proj_wgrad", "qkv_wgrad"]
    assert sum(isinstance(o, Collective) and o.kind == "reduce_scatter"
               for o in on.bwd_input) == 2
    assert not overlapped(ops(async_grad_reduce=False).bwd)
    assert not overlapped(ops(dtensor_tp=True).bwd)
    ring = ops("ring").bwd                   # the bulk userbuffers overlap instead
    assert not overlapped(ring) and any(
        isinstance(o, Overlap) and o.name == "qkv_wgrad_tp_overlap" for o in ring)
    assert all(isinstance(o, Compute) for o in on.bwd_weight)
