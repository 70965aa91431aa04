"""Megatron's pipeline transfers on the compute stream (workloads/pipeline_sync.py): a
2-stage 1F1B pipeline of two microbatches with fixed pass times f (forward), b (backward),
a transfer time x and a TP all-gather time y, played by the engine and compared with the
timeline worked out by hand."""

import pytest

from sim.engine import Engine
from workloads import training
from workloads.graph import Block, SendRecv
from workloads.model import ModelSpec
from workloads.parallel import ParallelPlan

F, B, X, Y = 3.0, 5.0, 1.0, 0.25


class PassCosts:
    def duration(self, node):
        if isinstance(node.op, Block) and node.name[0] in "FB":
            return F if node.name[0] == "F" else B
        return 0.0

    def parts(self, node):
        return {"compute": self.duration(node)}


class FixedP2P:
    """Every pipeline transfer X seconds, the receiver's all-gather Y, other collectives free."""

    def collective(self, env, op):
        yield env.timeout(Y if op.name == "p2p_gather" else 0)

    def p2p(self, env, src, dst, nbytes):
        yield env.timeout(X)


def _graph(blocking: bool, tp: int = 1):
    plan = ParallelPlan(tp=tp, pp=2, dp=1, micro_batch=1, global_batch=2, schedule="1f1b",
                        sequence_parallel=False)
    model = ModelSpec(layers=4, hidden=256, heads=8, vocab=1000, seq_len=128)
    return training.build(model, plan, training.TrainingOptions(p2p_blocking=blocking))


def _iteration(blocking: bool, tp: int = 1) -> float:
    rows = Engine(_graph(blocking, tp), PassCosts(), FixedP2P()).run()
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


def test_scattered_input_gathered_by_hand():
    # TP 2 without sequence parallelism: each received input is all-gathered (y) on the
    # receiver's compute stream before its pass. Stage 1: F0 [f+x+y, 2f+x+y], B0 [..+b],
    # gather of F1 [.., 2f+x+2y+b], F1, B1 [.., 3f+x+2y+2b], its send arrives at
    # 3f+2x+2y+2b; stage 0 gathers it (y) and runs B1: 3f + 2x + 3y + 3b.
    assert _iteration(False, tp=2) == pytest.approx(3 * F + 2 * X + 3 * Y + 3 * B)


def test_gather_per_received_input():
    g = _graph(False, tp=2)
    recvs = [n for n in g.nodes if isinstance(n.op, SendRecv) and n.op.kind == "recv"]
    gathers = [n for n in g.nodes if getattr(n.op, "name", "") == "p2p_gather"]
    assert len(gathers) == len(recvs) == 4
    assert {n.stream for n in gathers} == {"compute"}
    assert all(gt.op.bytes == 2 * r.op.bytes for gt, r in zip(gathers, recvs, strict=False))
    # with sequence parallelism the stage sends its own sequence shard: nothing to gather
    plan = ParallelPlan(tp=2, pp=2, dp=1, micro_batch=1, global_batch=2, sequence_parallel=True)
    model = ModelSpec(layers=4, hidden=256, heads=8, vocab=1000, seq_len=128)
    sp = training.build(model, plan, training.TrainingOptions())
    assert not [n for n in sp.nodes if getattr(n.op, "name", "") == "p2p_gather"]
