"""Chakra ET (protobuf) export and import: a round trip keeps the graph and its replay."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hw_models.errors import ClusterSimError
from sim.engine import Engine
from sim.replay import replay
from workloads import training
from workloads.graph import (
    Block,
    Collective,
    CommGroup,
    Compute,
    Delay,
    ExecutionGraph,
    Memory,
    SendRecv,
)
from workloads.model import ModelSpec
from workloads.parallel import ParallelPlan
from workloads.traces import chakra
from workloads.traces import chakra_schema as S
from workloads.traces.formats import load_trace

pytest.importorskip("google.protobuf")
from tests.paths import TRACES

DATA = TRACES


def _norm(op):
    """An op as comparable values (a builder may give bytes as int, the file keeps floats)."""
    if isinstance(op, Block):
        return ("block", op.name, tuple(_norm(o) for o in op.ops))
    vals = [getattr(op, f) for f in op.__slots__]
    return (type(op).__name__, *[float(v) if isinstance(v, int) and not isinstance(v, bool)
                                 else v for v in vals])


def _same(a: ExecutionGraph, b: ExecutionGraph) -> None:
    assert (a.world_size, a.simulated_ranks) == (b.world_size, b.simulated_ranks)
    key = lambda g: sorted((n.rank, n.stream, n.name, n.category, _norm(n.op),  # noqa: E731
                            tuple(sorted(g.nodes[d].name for d in n.deps))) for n in g.nodes)
    assert len(a) == len(b) and key(a) == key(b)


def _roundtrip(tr, tmp_path):
    chakra.export(tr.graph, tmp_path, steps=tr.steps)
    return chakra.load(tmp_path)


def test_roundtrip_et_alone_two_ranks(tmp_path, gloo_et_alone):
    tr = gloo_et_alone
    back = _roundtrip(tr, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["et.0.et", "et.1.et"]
    _same(tr.graph, back.graph)
    assert [(s.name, s.rank) for s in back.steps] == sorted((s.name, s.rank) for s in tr.steps)
    assert replay(back).replayed.iteration_s == pytest.approx(replay(tr).replayed.iteration_s,
                                                              rel=1e-12)


def test_roundtrip_measured_trace_keeps_replay(tmp_path):
    tr = load_trace(DATA / "mi250_minitoy_train.json.gz")
    back = _roundtrip(tr, tmp_path)
    _same(tr.graph, back.graph)
    a, b = replay(tr), replay(back)
    assert b.measured_iteration_s == a.measured_iteration_s
    assert b.replayed.iteration_s == pytest.approx(a.replayed.iteration_s, rel=1e-12)


def test_roundtrip_training_graph_with_blocks(tmp_path):
    model = ModelSpec(layers=4, hidden=256, heads=8, vocab=1000, seq_len=128)
    g = training.build(model, ParallelPlan(tp=1, pp=2, dp=1, micro_batch=1, global_batch=4),
                       training.TrainingOptions())
    assert any(isinstance(n.op, Block) for n in g.nodes)
    chakra.export(g, tmp_path)
    _same(g, chakra.load(tmp_path).graph)


def test_all_op_kinds_and_chakra_fields(tmp_path):
    g = ExecutionGraph(2)
    a = g.add(0, "compute", Compute("gemm", 2e9, 1e6, "bf16", (1024, 1024, 1024)))
    b = g.add(0, "dp", Collective("all_gather", 4e6, CommGroup((0, 1), "dp"), seq=0), [a], "dp")
    g.add(0, "pp_send", SendRecv("send", 1, 8e3, tag=7), [b], "pp")
    g.add(1, "pp_recv", SendRecv("recv", 0, 8e3, tag=7), [], "pp")
    g.add(1, "memory", Memory("h2d", 1e3, 2e-6), [], "memory")
    g.add(1, "compute", Delay(3e-6, "gap"))
    paths = chakra.export(g, tmp_path)
    _same(g, chakra.load(tmp_path).graph)
    m = S.messages()
    buf = paths[0].read_bytes()
    size, pos = S.decode_varint(buf, 0)
    node = m.Node()
    pos += size
        # skip the GlobalMetadata, read the first node: Chakra's own fields are filled
    size, pos = S.decode_varint(buf, pos)
    node.ParseFromString(buf[pos:pos + size])
    attrs = {x.name: x for x in node.attr}
    assert S.NODE_TYPES[node.type] == "COMP_NODE" and attrs["num_ops"].int64_val == 2_000_000_000


def test_foreign_chakra_nodes_map_by_type(tmp_path):
    m = S.messages()
    meta = m.GlobalMetadata(version="0.0.4")
    comp = m.Node(id=10, name="gemm", type=S.NODE_TYPES.index("COMP_NODE"), duration_micros=50)
    coll = m.Node(id=11, name="ar", type=S.NODE_TYPES.index("COMM_COLL_NODE"), data_deps=[10])
    coll.attr.add(name="comm_size").int64_val = 1 << 20
    coll.attr.add(name="comm_type").int64_val = S.COMM_TYPES.index("ALL_REDUCE")
    late = m.Node(id=5, name="after", type=S.NODE_TYPES.index("COMP_NODE"), ctrl_deps=[11, 99],
                  duration_micros=7)
    p = tmp_path / "foreign.0.et"
    p.write_bytes(b"".join(S.encode_varint(x.ByteSize()) + x.SerializeToString()
                           for x in (meta, late, comp, coll)))   # out of dependency order
    tr = load_trace(p)
    names = [n.name for n in tr.graph.nodes]
    assert names == ["gemm", "ar", "after"]
    ar = tr.graph.nodes[1].op
    assert isinstance(ar, Collective) and ar.bytes == 1 << 20 and ar.kind == "all_reduce"
    assert tr.graph.nodes[0].op.duration_s == pytest.approx(50e-6)
    assert any("dropped" in w for w in tr.warnings)   # the edge to id 99
    assert len(Engine(tr.graph, _Dur(), _Net()).run()) == 3


class _Dur:
    def duration(self, node):
        return getattr(node.op, "duration_s", None) or 0.0

    def parts(self, node):
        return {}


class _Net:
    def collective(self, env, op):
        yield env.timeout(0.0)

    def p2p(self, env, src, dst, nbytes):
        yield env.timeout(0.0)


@pytest.mark.parametrize("cut", [1, 7, 200])
def test_truncated_protobuf_is_a_clear_error(tmp_path, cut):
    tr = load_trace(DATA / "a100_simple_add_et.json.gz")
    (p,) = chakra.export(tr.graph, tmp_path / "full")
    bad = tmp_path / "bad.0.et"
    bad.write_bytes(p.read_bytes()[:-cut])
    with pytest.raises(ClusterSimError, match="corrupt or truncated|no nodes"):
        load_trace(bad)


def test_without_protobuf_import_still_works():
    code = ("import sys; sys.modules['google.protobuf'] = None\n"
            "import workloads.traces.formats, workloads.traces.chakra\n"
            "from hw_models.errors import ClusterSimError\n"
            "try:\n    workloads.traces.chakra_schema.messages()\n"
            "except ClusterSimError as e:\n    print('OK', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("OK") and "protobuf" in out.stdout
