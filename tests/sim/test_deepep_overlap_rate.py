"""DeepEP's normal internode kernels beside compute (sim.costs ``contention``): they run
at the catalog's ``deepep_overlap_rate_frac`` of their standalone rate while compute runs
beside them and at their full rate after it, hand-checked here."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hw_models.topology import fabric_defaults
from sim.costs import OpCosts, contends, overlap_rate_frac, overlapped_transfer
from workloads.graph import Block, CommGroup, Compute, ExpertDispatch

EP = CommGroup((0, 8, 16, 24), "ep")


def test_transfer_that_ends_beside_the_compute_runs_at_the_reduced_rate():
    # 2 s of work at half rate: 4 s, within the 10 s of compute
    assert overlapped_transfer(2.0, 10.0, 0.5) == pytest.approx(4.0)


def test_transfer_longer_than_the_compute_runs_its_rest_at_full_rate():
    # 4 s of compute at half rate moves 2 s of the 6 s of work; the other 4 s after it: 8 s
    assert overlapped_transfer(6.0, 4.0, 0.5) == pytest.approx(8.0)
    assert overlapped_transfer(6.0, 0.0, 0.5) == 6.0        # nothing beside it
    assert overlapped_transfer(6.0, 4.0, 1.0) == 6.0        # no contention


def test_catalog_fraction():
    assert overlap_rate_frac() == fabric_defaults()["deepep_overlap_rate_frac"] == 0.68


def test_only_normal_internode_kernels_contend():
    assert contends(ExpertDispatch("all_to_all", 1e6, EP, sms=20))
    assert not contends(ExpertDispatch("all_to_all", 1e6, EP, low_latency=True))
    assert not contends(ExpertDispatch("all_to_all", 0.0, EP, nvl_bytes=1e6, sms=20))  # NVLink only
    assert not contends(ExpertDispatch("all_to_all", 1e6, EP))                        # no SMs


class Seconds(OpCosts):
    """op_time of a Compute is its flops, of a dispatch its bytes (seconds); 132 SMs."""
    def __init__(self):
        super().__init__(SimpleNamespace(gpu=SimpleNamespace(sms=132)), None)

    def uncached_time(self, op):
        if isinstance(op, Block):
            return sum(self.parts(op).values())
        return op.flops if isinstance(op, Compute) else op.bytes


def test_block_with_a_combine_longer_than_its_compute():
    """10 s of compute beside an 8 s combine on 20 SMs: 10 s at 0.68 moves 6.8 s of it,
    the last 1.2 s run alone, so it ends at 11.2 s. Its SMs are held 11.2 s, the compute
    loses 11.2 x 20 / 132 = 1.697 s, more than the 1.2 s the transfer outlasts it: the
    block takes 11.697 s."""
    costs = Seconds()
    block = Block((Compute("gemm", 10.0), ExpertDispatch("all_to_all", 8.0, EP, sms=20)),
                  overlap=("ep",))
    parts = costs.parts(block)
    assert parts["compute"] == 10.0
    assert parts["ep"] == pytest.approx(11.2 * 20 / 132)
    assert costs.op_time(block) == pytest.approx(10.0 + 11.2 * 20 / 132)


def test_block_with_a_short_dispatch():
    """10 s of compute beside a 3.4 s dispatch: at 0.68 it takes 5 s, all beside the
    compute; exposed: the compute its 20 SMs take for 5 s, 5 x 20 / 132."""
    costs = Seconds()
    block = Block((Compute("gemm", 10.0), ExpertDispatch("all_to_all", 3.4, EP, sms=20)),
                  overlap=("ep",))
    assert costs.parts(block)["ep"] == pytest.approx(5.0 * 20 / 132)


def test_block_without_overlap_is_unchanged():
    costs = Seconds()
    block = Block((Compute("gemm", 10.0), ExpertDispatch("all_to_all", 8.0, EP, sms=20)))
    assert costs.parts(block) == {"compute": 10.0, "ep": 8.0}


def test_low_latency_dispatch_phases_hold_every_sm():
    """A low-latency dispatch of 150 us (sm_frac 0.35: 52.5 us of send and receive phases
    on every SM, the rest in flight) beside 130 us of compute: the compute waits 52.5 us
    for the phases, the block takes max(130 + 52.5, 150) = 182.5 us; beside 80 us of
    compute the transfer is longer: max(80 + 52.5, 150) = 150 us. Not slowed by the
    normal kernels' contention."""
    costs = Seconds()
    ll = ExpertDispatch("all_to_all", 150e-6, EP, low_latency=True, sm_frac=0.35)
    block = Block((Compute("gemm", 130e-6), ll), overlap=("ep",))
    assert costs.op_time(block) == pytest.approx(182.5e-6)
    short = Block((Compute("gemm", 80e-6), ll), overlap=("ep",))
    assert costs.op_time(short) == pytest.approx(150e-6)
    combine = ExpertDispatch("all_to_all", 150e-6, EP, low_latency=True)
    assert costs.op_time(Block((Compute("gemm", 130e-6), combine), overlap=("ep",))) == \
        pytest.approx(150e-6)
