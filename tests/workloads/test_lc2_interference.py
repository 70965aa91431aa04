"""Compute/communication interference of overlapped GEMMs, checked by hand."""

from types import SimpleNamespace

import pytest

from sim.costs import OpCosts
from workloads import training
from workloads.comm_sms import tp_overlap_sms
from workloads.graph import Collective, CommGroup, Compute, Overlap
from workloads.model import ModelSpec
from workloads.parallel import ParallelPlan

M = ModelSpec(layers=2, hidden=512, heads=8, vocab=1000, seq_len=256)


def test_no_sms_keeps_the_plain_pipelined_time():
    o = Overlap((), (), 3, comm_sms=24, sm_margin=True)
    # M/(n+1) + n max(M/(n+1), H/n) = 0.25 + 3 max(0.25, 0.2) = 1.0
    assert o.time(1.0, 0.6) == pytest.approx(1.0)
    assert Overlap((), (), 3).time(1.0, 0.6, sms=132) == pytest.approx(1.0)


def test_sm_margin_slows_the_whole_gemm():
    # TE pipeline RS with 24 of 132 SMs: the GEMM runs 132/108 longer throughout
    o = Overlap((), (), 1, comm_sms=24, sm_margin=True)
    t = 1.0 * 132 / 108
    assert o.time(1.0, 0.5, sms=132) == pytest.approx(t / 2 + max(t / 2, 0.5))


def test_concurrent_kernel_takes_sms_only_while_it_runs():
    o = Overlap((), (), 3, comm_sms=20)
    # c = 0.25, h = 0.2 per step; compute loses 20/100 of the GPU for 0.2 s: +0.04 per step
    assert o.time(1.0, 0.6, sms=100) == pytest.approx(0.25 + 3 * 0.29)
    # communication-bound steps: the compute finishes under the transfer, no loss shows
    assert o.time(1.0, 3.0, sms=100) == pytest.approx(0.25 + 3 * 1.0)


def test_userbuffers_sms_by_gemm_and_mode():
    assert tp_overlap_sms("ring", "attn_proj") == (24, True)
    assert tp_overlap_sms("ring", "mlp_down") == (16, True)
    assert tp_overlap_sms("ring", "qkv") == (1, False)
    assert tp_overlap_sms("ring", "qkv_wgrad") == (24, False)
    assert tp_overlap_sms("async", "attn_proj") == (0, False)   # copy engines


@pytest.mark.parametrize("mode,want", [("ring", {"qkv": 1, "attn_proj": 24, "mlp_up": 1,
                                                 "mlp_down": 16}),
                                       ("async", {"qkv": 0, "attn_proj": 0, "mlp_up": 0,
                                                  "mlp_down": 0})])
def test_training_graph_carries_the_sms(mode, want):
    p = ParallelPlan(tp=4, pp=1, dp=1, micro_batch=1, global_batch=1, sequence_parallel=True,
                     tp_comm_overlap=mode)
    g = training.build(M, p, training.TrainingOptions())
    fwd = next(n for n in g.nodes if n.name == "F0_c0").op.ops
    got = {o.main[0].name: o.comm_sms for o in fwd if isinstance(o, Overlap)}
    assert {k: got[k] for k in want} == want


def test_op_costs_charge_the_lost_time_to_the_collective():
    gemm = Compute("gemm", duration_s=1.0, name="attn_proj")
    rs = Collective("reduce_scatter", 1.0, CommGroup((0, 1), "tp"), duration_s=0.5)
    costs = OpCosts(SimpleNamespace(gpu=SimpleNamespace(sms=132)), None)
    parts = costs.parts(Overlap((gemm,), (rs,), 1, "x", 24, True))
    t = 132 / 108
    assert parts["compute"] == pytest.approx(1.0)
    assert parts["tp"] == pytest.approx(t - 1.0)     # 0.2222 s: the SMs the RS kernel held
