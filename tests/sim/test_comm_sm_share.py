"""Compute beside an NCCL collective on a side stream runs on the SMs its CTAs leave
(sim/engine.py SM sharing; CTA counts: sim/network/collectives/nccl_model.ring_ctas)."""

import pytest

from sim.engine import Engine
from sim.network.collectives.nccl_model import ring_ctas
from tests.sim.test_engine import FixedCosts
from workloads.graph import Collective, CommGroup, Compute, Delay, ExecutionGraph


class FixedNetwork:
    """Collectives take 0.5 s."""
    def collective(self, env, op):
        yield env.timeout(0.5)


def _gemm(seconds: float) -> Compute:
    return Compute("matmul", 0.0, 0.0, duration_s=seconds, name="gemm")


def _run(g, sms=132, k=33):
    rows = Engine(g, FixedCosts(), FixedNetwork(), comm_sms=lambda op: k, gpu_sms=sms).run()
    return {r.name: r for r in rows}


def test_gemm_beside_collective_runs_on_the_rest_of_the_sms():
    """1 s GEMM, a 0.5 s collective with N = 33 CTAs beside it from t = 0 on a 132-SM GPU:
    over the 0.5 s overlap the GEMM does 0.5 x 99/132 = 0.375 s of its work, the other
    0.625 s alone: it ends at 1.125 s (= 0.375 x 132/99 + 0.625)."""
    g = ExecutionGraph(1)
    g.add(0, "compute", _gemm(1.0), name="gemm")
    g.add(0, "dp", Collective("reduce_scatter", 8, CommGroup((0,), "dp")), (), "dp", name="rs")
    r = _run(g)
    assert r["rs"].end == pytest.approx(0.5)
    assert r["gemm"].end == pytest.approx(0.375 * 132 / 99 + 0.625)
    # the breakdown keeps the GEMM's own second as compute, the 0.125 s lost as dp
    assert r["gemm"].parts == pytest.approx({"compute": 1.0, "dp": 0.125})


def test_gemm_inside_the_collective_is_stretched_by_s_over_s_minus_n():
    """A 0.2 s GEMM starting at 0.1 s lies wholly under the collective: 0.2 x 132/(132-33)."""
    g = ExecutionGraph(1)
    d = g.add(0, "compute", Delay(0.1), name="idle")
    g.add(0, "compute", _gemm(0.2), (d,), name="gemm")
    g.add(0, "dp", Collective("all_gather", 8, CommGroup((0,), "dp")), name="ag")
    r = _run(g)
    assert r["gemm"].end - r["gemm"].start == pytest.approx(0.2 * 132 / 99)


def test_delay_and_unset_sms_are_not_slowed():
    """Host delays hold no SMs; without a GPU SM count the engine shares nothing."""
    g = ExecutionGraph(1)
    g.add(0, "compute", Delay(0.4), name="wait")
    g.add(0, "dp", Collective("all_gather", 8, CommGroup((0,), "dp")), name="ag")
    assert _run(g)["wait"].end == pytest.approx(0.4)
    g = ExecutionGraph(1)
    g.add(0, "compute", _gemm(1.0), name="gemm")
    g.add(0, "dp", Collective("all_gather", 8, CommGroup((0,), "dp")), name="ag")
    assert _run(g, sms=0)["gemm"].end == pytest.approx(1.0)


@pytest.mark.parametrize(("args", "ctas"), [
    # one node: search 6 x 60 GB/s of 18 x 20.6 (H100), 8 x 90 of 18 x 40.1 (B200),
    # 6 x 40 of 12 x 20 (A100, the log's 24: nccl-tests#100); dup x2, connect x2
    (("sm90", 450, 8, 1), 24), (("sm100", 900, 8, 1), 32), (("sm80", 300, 8, 1), 24),
    # across nodes, 8 per node on 400G NICs: 8 rails at 45 GB/s, no dup, x2 (nccl-tests#319)
    (("sm90", 450, 8, 2, 50.0), 16),
    # one GPU per node: 1 channel at 48 GB/s, dup to 2 at 24, x2
    (("sm90", 450, 1, 4, 50.0), 4),
    # 36 GPUs of each of two NVL72 domains: 16 x 45.1 GB/s of 18 x 40.1 beats 32 x 22
    (("sm100", 900, 36, 2, 50.0), 32),
    (("mi300x", 896, 8, 1), 0),
])
def test_ring_ctas_follow_nccl_search_and_doublings(args, ctas):
    assert ring_ctas(*args) == ctas


def test_nccl_overlap_in_a_block_loses_the_ctas_sms_while_the_collective_runs():
    """Megatron's async TP gradient reduce-scatter (24 CTAs) beside a 1 ms wgrad GEMM on
    132 SMs: the GEMM runs 0.4 ms at 108/132 speed, max(0.4, 1 + 0.4 x 24/132) ms; a
    userbuffers overlap keeps its own count; without the NCCL count nothing changes."""
    from workloads.graph import Overlap
    o = Overlap((), (), 1, concurrent=True, nccl=True)
    assert o.time(1e-3, 0.4e-3, 132, 24) == pytest.approx(1e-3 + 0.4e-3 * 24 / 132)
    assert o.time(1e-3, 0.4e-3, 132) == pytest.approx(1e-3)
    ub = Overlap((), (), 1, comm_sms=4, concurrent=True)
    assert ub.time(1e-3, 0.4e-3, 132, 24) == pytest.approx(1e-3 + 0.4e-3 * 4 / 132)
