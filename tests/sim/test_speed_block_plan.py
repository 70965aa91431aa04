"""The closed-form part of a block whose all-to-alls play on the network is planned once
per block op (sim.block_flows.block_plan): the waits between played collectives are the
sums of the kernels between them, hand-checked here on a six-op block."""

from __future__ import annotations

import pytest

from sim.block_flows import block_plan
from workloads.graph import Block, Collective, CommGroup, Compute

EP = CommGroup((0, 1), "ep")
TP = CommGroup((0, 2), "tp")


class Times:
    """op_time of a Compute is its flops (seconds); of a TP collective its bytes."""
    def op_time(self, op) -> float:
        return op.flops if isinstance(op, Compute) else op.bytes


def ops():
    return (Compute("gemm", 1.0), Collective("all_to_all", 1e6, EP), Compute("gemm", 2.0),
            Collective("all_reduce", 0.5, TP), Collective("all_to_all", 1e6, EP),
            Compute("elementwise", 4.0))


def test_sequential_block_steps():
    block = Block(ops())
    played, static, busy, steps, order, slower = block_plan(block, Times(), ("ep",))
    assert played == [block.ops[1], block.ops[4]]
    assert steps == [1.0, block.ops[1], 2.5, block.ops[4], 4.0]    # 2.0 + 0.5 between them
    assert static == {"compute": 7.0, "tp": 0.5}
    assert busy == pytest.approx(7.5)
    assert order == ("compute", "ep", "tp")              # categories as they first appear


def test_overlapped_block_waits_for_all_its_compute():
    block = Block(ops(), overlap=("ep",))
    played, static, busy, steps, order, slower = block_plan(block, Times(), ("ep",))
    assert steps is None
    assert busy == 7.5
    assert order == ("compute", "tp")                    # the exposed ep time comes last
    assert slower == (0.0, 0.0)          # plain all-to-alls: no DeepEP kernel slowed
