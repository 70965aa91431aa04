"""The engine on small hand-checked graphs."""

import gc

import pytest

from sim.engine import Engine, cyclic_gc_paused
from workloads.graph import Collective, CommGroup, Delay, ExecutionGraph, SendRecv


class FixedCosts:
    def duration(self, node):
        return node.op.duration_s

    def parts(self, node):
        return {}


class FixedNetwork:
    """Collectives take 1 s, point-to-point 0.5 s."""
    def collective(self, env, op):
        yield env.timeout(1.0)

    def p2p(self, env, src, dst, nbytes):
        yield env.timeout(0.5)


def run(g):
    rows = Engine(g, FixedCosts(), FixedNetwork()).run()
    return {r.name: r for r in rows}


def test_stream_serialises_and_streams_overlap():
    g = ExecutionGraph(1)
    g.add(0, "compute", Delay(2.0), name="a")
    g.add(0, "compute", Delay(3.0), name="b")
    g.add(0, "copy", Delay(4.0), name="c")
    r = run(g)
    assert (r["b"].start, r["b"].end) == (2.0, 5.0)
    assert (r["c"].start, r["c"].end) == (0.0, 4.0)


def test_dependency_across_streams():
    g = ExecutionGraph(1)
    a = g.add(0, "copy", Delay(4.0), name="a")
    g.add(0, "compute", Delay(1.0), (a,), name="b")
    assert run(g)["b"].end == 5.0


def test_collective_waits_for_last_member():
    g = ExecutionGraph(2)
    grp = CommGroup((0, 1), "dp")
    g.add(0, "compute", Delay(1.0), name="x0")
    x1 = g.add(1, "compute", Delay(3.0), name="x1")
    g.add(0, "comm", Collective("all_reduce", 8, grp), (0,), name="ar0")
    g.add(1, "comm", Collective("all_reduce", 8, grp), (x1,), name="ar1")
    r = run(g)
    assert r["ar0"].ready == 1.0 and r["ar0"].start == 3.0
    assert r["ar0"].end == r["ar1"].end == 4.0


def test_symmetric_members_do_not_wait():
    """Members that are not simulated arrive with the simulated one."""
    g = ExecutionGraph(8, simulated_ranks=(0,))
    g.add(0, "comm", Collective("all_reduce", 8, CommGroup(tuple(range(8)), "dp")), name="ar")
    assert run(g)["ar"].end == 1.0


def test_send_recv_pair():
    g = ExecutionGraph(2)
    s = g.add(0, "compute", Delay(2.0), name="produce")
    g.add(1, "recv", SendRecv("recv", 0, 100, tag=7), name="recv")
    g.add(0, "send", SendRecv("send", 1, 100, tag=7), (s,), name="send")
    r = run(g)
    assert r["recv"].start == 2.0 and r["recv"].end == 2.5 == r["send"].end


def test_unmatched_recv_is_a_deadlock():
    g = ExecutionGraph(2, simulated_ranks=(0, 1))
    g.add(1, "recv", SendRecv("recv", 0, 100, tag=1), name="recv")
    with pytest.raises(RuntimeError, match="deadlock"):
        run(g)


def test_forward_dependency_rejected():
    from hw_models.errors import ClusterSimError
    g = ExecutionGraph(1)
    with pytest.raises(ClusterSimError):
        g.add(0, "compute", Delay(1.0), (3,))


def test_collector_paused_then_restored_as_it_was():
    was = gc.isenabled()
    try:
        gc.enable()
        with cyclic_gc_paused():
            assert not gc.isenabled()
        assert gc.isenabled()
        gc.disable()
        with cyclic_gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()              # a caller's own pause is kept
    finally:
        (gc.enable if was else gc.disable)()
