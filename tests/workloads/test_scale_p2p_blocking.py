"""Blocking pipeline sends (workloads/pipeline_sync.py): a 2-stage 1F1B pipeline of two
microbatches with fixed pass times f (forward), b (backward) and a transfer time x, played
by the engine and compared with the timeline worked out by hand."""

import pytest

from sim.engine import Engine
from workloads import training
from workloads.graph import Block, SendRecv
from workloads.model import ModelSpec
from workloads.parallel import ParallelPlan

F, B, X = 3.0, 5.0, 1.0


class PassCosts:
    def duration(self, node):
        if isinstance(node.op, Block) and node.name[0] in "FB":
            return F if node.name[0] == "F" else B
        return 0.0

    def parts(self, node):
        return {"compute": self.duration(node)}


class FixedP2P:
    """Collectives free, every pipeline transfer X seconds."""

    def collective(self, env, op):
        yield env.timeout(0)

    def p2p(self, env, src, dst, nbytes):
        yield env.timeout(X)


def _graph(blocking: bool):
    plan = ParallelPlan(tp=1, pp=2, dp=1, micro_batch=1, global_batch=2, schedule="1f1b")
    model = ModelSpec(layers=4, hidden=256, heads=8, vocab=1000, seq_len=128)
    return training.build(model, plan, training.TrainingOptions(p2p_blocking=blocking))


def _iteration(blocking: bool) -> float:
    rows = Engine(_graph(blocking), PassCosts(), FixedP2P()).run()
    return max(r.end for r in rows if r.name != "optimizer")


def test_async_sends_by_hand():
    # Stage 0: F0 [0,f], F1 [f,2f]; its sends run beside.  Stage 1: F0 [f+x, 2f+x],
    # B0 [.., 2f+x+b], F1 [.., 3f+x+b], B1 [.., 3f+x+2b]; B1's gradient reaches stage 0
    # at 3f+2x+2b, after stage 0's B0, so B1 there ends at 3f + 2x + 3b.
    assert _iteration(False) == pytest.approx(3 * F + 2 * X + 3 * B)


def test_blocking_sends_by_hand():
    # Stage 0 waits for each send: F0 [0,f], send [f,f+x], F1 [f+x,2f+x], send [..,2f+2x].
    # Stage 1: F0 [f+x,2f+x], B0 [..,2f+x+b], send [..,2f+2x+b], F1 [..,3f+2x+b],
    # B1 [..,3f+2x+2b], send [..,3f+3x+2b]; stage 0's B1 ends at 3f + 3x + 3b: one transfer
    # more than with sends beside compute.
    assert _iteration(True) == pytest.approx(3 * F + 3 * X + 3 * B)


def test_blocking_sends_sit_on_the_compute_stream():
    g = _graph(True)
    sends = [n for n in g.nodes if isinstance(n.op, SendRecv) and n.op.kind == "send"]
    recvs = [n for n in g.nodes if isinstance(n.op, SendRecv) and n.op.kind == "recv"]
    assert len(sends) == len(recvs) == 4          # F0, F1 forward; B0, B1 backward
    assert {n.stream for n in sends} == {"compute"}
