"""``replay --durations model``: priced ops take the models' time, the rest their recorded
time; the coverage figures are sums of the recorded durations."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sim.cli.main import app
from sim.replay import ReplayCosts, model_coverage, priced, replay
from sim.whatif import Recoster, WhatIf
from workloads.graph import Compute
from workloads.traces.formats import load_trace
from workloads.traces.kineto import kernel_class

TRACE = Path(__file__).parents[1] / "data" / "traces" / "mi250_minitoy_train.json.gz"
SYSTEM = "azure-nd-a100-v4"


@pytest.fixture(scope="module")
def trace():
    return load_trace(TRACE)     # recorded with shapes: aten::mm, addmm, add...


def test_model_costs_replace_recorded_times_of_priced_ops_only(trace):
    rec = Recoster(WhatIf(source_system=SYSTEM), trace.graph.world_size)
    costs = ReplayCosts(None, rec, model=True)
    nodes = [n for n in trace.graph.nodes if isinstance(n.op, Compute) and n.op.duration_s]
    gemm = next(n for n in nodes if priced(n) and n.op.op_class == "gemm")
    assert costs.duration(gemm) == rec.price_compute(gemm.op, target=False)
    assert costs.duration(gemm) != gemm.op.duration_s
    rest = next(n for n in nodes if not priced(n))
    assert costs.duration(rest) == rest.op.duration_s


def test_coverage_is_recorded_time_share(trace):
    rec = Recoster(WhatIf(source_system=SYSTEM), trace.graph.world_size)
    cov = model_coverage(trace, None, rec)
    dev = [n for n in trace.graph.nodes if not n.stream.startswith("cpu:")
           and kernel_class(n.op) is not None and getattr(n.op, "duration_s", None)]
    total = sum(n.op.duration_s for n in dev)
    done = sum(n.op.duration_s for n in dev if priced(n))
    assert cov["priced_share"] == pytest.approx(done / total)
    assert 0 < cov["priced_share"] < 1 and cov["unpriced_kernels"]


def test_measured_mode_is_unchanged_and_bad_mode_refused(trace):
    a = replay(trace, WhatIf(source_system=SYSTEM))
    b = replay(trace, WhatIf(source_system=SYSTEM), durations="measured")
    assert a.replayed.iteration_s == b.replayed.iteration_s
    from hw_models.errors import ClusterSimError
    with pytest.raises(ClusterSimError, match="allowed: measured, model"):
        replay(trace, durations="modelled")


def test_cli_model_durations_json_and_error():
    r = CliRunner().invoke(app, ["replay", str(TRACE), "--source-system", SYSTEM,
                                 "--durations", "model", "--format", "json"])
    assert r.exit_code == 0, r.output
    bad = CliRunner().invoke(app, ["replay", str(TRACE), "--durations", "x"])
    assert bad.exit_code == 2 and "allowed: measured, model" in bad.output
