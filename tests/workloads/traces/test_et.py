"""PyTorch Execution Trace import: alone (costed by the models) and linked with Kineto."""

from __future__ import annotations

from collections import Counter

import pytest

from sim.replay import replay
from sim.whatif import WhatIf
from tests.paths import TRACES
from workloads.graph import Collective, Compute
from workloads.traces import et as ET
from workloads.traces.formats import CHAKRA, EXEC_TRACE, KINETO, detect, load_trace

DATA = TRACES
ET1 = DATA / "cpu_gpt_1rank_et.json.gz"
K1 = DATA / "cpu_gpt_1rank_with_et.json.gz"
GLOO_ET = DATA / "cpu_gpt_2rank_gloo_et"
D, V, T, B, H = 64, 256, 32, 8, 4  # TinyGPT of tests/data/traces/record.py


@pytest.fixture(scope="module")
def alone():
    return load_trace(ET1)


def test_detect_formats(tmp_path):
    assert detect(ET1) == EXEC_TRACE
    assert detect(DATA / "a100_simple_add_et.json.gz") == EXEC_TRACE  # schema 1.0.1
    assert detect(K1) == KINETO
    (tmp_path / "x.et").write_bytes(b"\x05abcde")
    assert detect(tmp_path / "x.et") == CHAKRA


def test_both_schemas_parse():
    old, new = ET.load(DATA / "a100_simple_add_et.json.gz"), ET.load(ET1)
    assert old.schema == "1.0.1" and new.schema.startswith("1.1")
    add = next(o for o in old.ops.values() if o.name == "aten::add")
    assert [t.shape for t in add.inputs[:2]] == [[256, 256], [256, 256]]
    assert add.inputs[0].nbytes == 256 * 256 * 4
    assert sum(1 for r in new.roots if r.name.startswith("ProfilerStep#")) == 3


def test_gemm_flops_from_shapes(alone):
    gemms = [n.op for n in alone.graph.nodes if isinstance(n.op, Compute)
             and n.op.op_class == "gemm"]
    shapes = Counter(op.shape for op in gemms)
    # Forward per step, by hand: MLP up (B*T, 4D, D) x2 layers, LM head (B*T, V, D).
    assert shapes[(B * T, 4 * D, D)] >= 3 * 2
    assert shapes[(B * T, V, D)] >= 3
    for op in gemms:
        m, n, k = op.shape
        assert op.flops == 2.0 * m * n * k and op.dtype == "fp32"


def test_alone_is_costed_and_has_no_measurement(alone):
    r = replay(alone, WhatIf("dgx-a100", "dgx-h100"))
    assert r.measured_iteration_s is None and r.replay_error is None
    assert len(alone.steps) == 3 and r.replayed.iteration_s > 0
    assert r.whatif.iteration_s < r.replayed.iteration_s   # modelled ops move with the GPU
    assert not r.cpu_bound


def test_collectives_sizes_and_data_deps(gloo_et_alone):
    tr = gloo_et_alone
    g = tr.graph
    colls = [n for n in g.nodes if isinstance(n.op, Collective)]
    # One all-reduce per parameter per step (explicit DP loop); sizes are the parameters.
    params = [V * D, T * D] + [D, D, D, D, 3 * D * D, 3 * D, D * D, D, 4 * D * D, 4 * D,
                               D * 4 * D, D] * 2 + [V * D, V]
    for rank in (0, 1):
        mine = [n.op for n in colls if n.rank == rank]
        assert len(mine) == 3 * len(params)
        assert Counter(op.bytes for op in mine) == Counter(4.0 * p for p in params * 3)
        assert [op.seq for op in mine] == list(range(len(mine)))
    users = {d for n in g.nodes for d in n.deps if n.stream != "comm"}
    # Every gradient all-reduce is waited on by the op that uses its result (grad /= world).
    assert all(c.id in users for c in colls)
    r = replay(tr)
    assert r.replayed.breakdown["nccl_s"] > 0 and r.measured_iteration_s is None


def test_linked_reproduces_measured_and_keeps_work():
    tr = load_trace(K1, ET1)
    assert tr.link[0]["method"] == "record function id"
    assert tr.link[0]["linked"] == tr.link[0]["et_ops"]
    r = replay(tr)
    assert abs(r.replay_error) < 0.03
    gemm = [n.op for n in tr.graph.nodes if isinstance(n.op, Compute) and n.op.op_class == "gemm"]
    assert gemm and all(op.flops > 0 and op.duration_s > 0 for op in gemm)
    assert r.cpu_bound  # host time as measured: a GPU what-if cannot move it


def test_linked_older_kineto_without_record_function_id():
    tr = load_trace(DATA / "a100_simple_add_kineto.json.gz", DATA / "a100_simple_add_et.json.gz")
    assert tr.link[0]["linked"] == tr.link[0]["et_ops"]
    assert abs(replay(tr).replay_error) < 0.03


def test_linked_two_ranks_gloo():
    tr = load_trace(GLOO_ET)   # a folder with Kineto and ET per rank links them by rank
    assert set(tr.link) == {0, 1}
    r = replay(tr)
    # Every step within 3% (docs/replay.md: the shared transfer runs from the last arrival
    # to the first completion; a rank's later completion is its own time).
    assert abs(r.replay_error) < 0.03
    assert all(abs(s["replayed_s"] / s["measured_s"] - 1) < 0.03 for s in r.steps)


def test_cli_link_export_and_cpu_bound_warning(tmp_path):
    import json

    pytest.importorskip("google.protobuf")
    from typer.testing import CliRunner

    from sim.cli.main import app
    run = CliRunner().invoke
    out = run(app, ["replay", str(K1), "--et", str(ET1), "--target-system", "dgx-h100",
                    "--export-chakra", str(tmp_path / "chakra"), "--format", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout[out.stdout.index("{"):])
    assert data["format"] == "et+kineto" and data["cpu_bound"] is True
    # The what-if cannot move a host-paced step, and the report says so.
    assert data["whatif_iteration_s"] == data["replayed_iteration_s"]
    assert any(w.startswith("cpu_bound") for w in data["warnings"])
    back = run(app, ["replay", str(tmp_path / "chakra"), "--format", "json"])
    again = json.loads(back.stdout[back.stdout.index("{"):])
    assert again["format"] == "chakra"
    assert again["replayed_iteration_s"] == pytest.approx(data["replayed_iteration_s"], rel=1e-12)


def _op(name, inputs, outputs=()):
    return ET.EtOp(1, name, 0, 1, 1, list(inputs), list(outputs))


def test_comm_ops_kind_and_bytes():
    """Synthetic ET ops shaped like the observer writes them (no NCCL run is recorded here)."""
    from workloads.traces.et_cost import collective
    t = ET.Arg([7, 8, 0, 1024, 2, "cuda:0"], [1024], "Tensor(c10::BFloat16)")
    rpc = collective(_op("record_param_comms", [t, ET.Arg(["0", "default_pg"], [], "Tuple"),
                                                ET.Arg("allreduce", [], "String")]), world=4)
    assert (rpc.kind, rpc.bytes, rpc.group.ranks) == ("all_reduce", 2048.0, (0, 1, 2, 3))
    outs = ET.Arg([[1, 2, 0, 512, 4, "cpu"], [3, 4, 0, 512, 4, "cpu"]], [[512], [512]],
                  "GenericList[Tensor(float),Tensor(float)]")
    inp = ET.Arg([5, 6, 0, 512, 4, "cpu"], [512], "Tensor(float)")
    ag = collective(_op("c10d::allgather_", [outs, inp], [outs]), world=2)
    assert ag.kind == "all_gather" and ag.bytes == 2 * 512 * 4   # the gathered buffer
    assert collective(_op("c10d::send", [inp]), world=2) is None  # point-to-point: not a collective
