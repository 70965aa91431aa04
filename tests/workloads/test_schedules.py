"""Pipeline schedules: with free communication the bubble is (p-1)/m, (p-1)/(v m) interleaved."""

import pytest

from sim.engine import Engine
from workloads import training
from workloads.graph import Block
from workloads.model import ModelSpec
from workloads.parallel import ParallelPlan
from workloads.schedules import interleaved, one_f_one_b

TF, TB = 1.0, 2.0     # seconds per forward / backward of one stage's whole chunk set


class UnitCosts:
    """Forward of a chunk takes TF / v, backward TB / v; everything else is free."""
    def __init__(self, v):
        self.v = v

    def duration(self, node):
        if isinstance(node.op, Block):
            return (TF if node.name.startswith("F") else TB) / self.v
        return 0.0

    def parts(self, node):
        return {"compute": self.duration(node)}


class FreeNetwork:
    def collective(self, env, op):
        yield env.timeout(0)

    def p2p(self, env, src, dst, nbytes):
        yield env.timeout(0)


MODEL = ModelSpec(layers=24, hidden=256, heads=8, vocab=1000, seq_len=128)


@pytest.mark.parametrize("p,m,v", [(4, 8, 1), (8, 32, 1), (4, 8, 2), (4, 16, 3)])
def test_bubble_fraction(p, m, v):
    plan = ParallelPlan(tp=1, pp=p, dp=1, micro_batch=1, global_batch=m, vpp=v)
    g = training.build(MODEL, plan, training.TrainingOptions())
    rows = Engine(g, UnitCosts(v), FreeNetwork()).run()
    t = max(r.end for r in rows if r.name != "optimizer")
    ideal = m * (TF + TB)
    assert (t - ideal) / ideal == pytest.approx((p - 1) / (v * m), rel=1e-9)


def test_1f1b_order_and_counts():
    steps = one_f_one_b(m=4, p=3, stage=0)
    assert steps[:2] == [(0, 0, "F"), (1, 0, "F")]
    assert [s[2] for s in steps].count("F") == 4 == [s[2] for s in steps].count("B")
    last = one_f_one_b(m=4, p=3, stage=2)
    assert [s[2] for s in last] == ["F", "B"] * 4


def test_interleaved_covers_every_chunk_once():
    steps = interleaved(m=8, p=4, v=2, stage=1)
    assert sorted(steps) == sorted((mb, c, x) for mb in range(8) for c in range(2) for x in "FB")
