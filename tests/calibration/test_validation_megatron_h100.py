"""Megatron-LM H100 weak-scaling suite: the table is read as published and the predicted
metric is Megatron's model FLOPs over the predicted step (hand formula)."""

import pytest

from calibration.validate_megatron_h100 import SEQ, VOCAB, rows, scenario_for
from sim.scenario import parse
from sim.simulate import simulate
from workloads.model import model_flops, resolve


def test_table_as_published():
    df = rows()
    assert len(df) == 9 and df.num_gpus.tolist() == [48, 96, 192, 384, 768, 1536, 2304, 3072, 6144]
    big = df.iloc[-1]
    assert (big.hidden, big.heads, big.num_layers_run, big.tp, big.pp) == (18432, 144, 112, 8, 16)
    assert big.model_tflops_per_gpu == 459.9


def test_metric_is_megatrons_model_flops():
    r = rows().iloc[0]                                   # GPT 1.7B on 48 GPUs
    sc = scenario_for(r)
    B, s, L, h, V = int(r.global_batch_seqs), SEQ, int(r.num_layers_run), int(r.hidden), VOCAB
    megatron = 72 * B * s * L * h**2 * (1 + s / (6 * h) + V / (12 * L * h))
    assert model_flops(resolve(sc["workload"]["model"]), B * s) == pytest.approx(megatron, rel=1e-9)
    res = simulate(parse(sc), band=False)
    assert res.tflops_per_gpu == pytest.approx(megatron / res.iteration_time_s / 48 / 1e12)


def test_runs_overlap_tp_communication_as_the_table_states():
    """The table's runs use --tp-comm-overlap (with sequence parallelism): every TP > 1
    row is simulated with Megatron's userbuffers overlap, the TP = 1 row has none."""
    df = rows()
    assert df.other_settings.str.contains("--tp-comm-overlap").all()
    for r in df.itertuples():
        par = scenario_for(r)["workload"]["parallel"]
        assert par["tp_comm_overlap"] == ("ring" if r.tp > 1 else "none")
        assert par["sequence_parallel"] == (r.tp > 1)


def test_cli_prints_the_suite(monkeypatch, capsys):
    """`clustersim validate megatron-h100` (as the README shows it): the nine published rows,
    each error the predicted over the published TFLOP/s, and the median line."""
    import json

    from tests.sim.hardening_helpers import cli
    code, out, err = cli(monkeypatch, capsys, "validate", "megatron-h100", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    got = data["rows"]
    assert [r["gpus"] for r in got] == rows().num_gpus.tolist()
    for r in got:
        assert r["error_pct"] == pytest.approx(
            100 * (r["predicted_tflops"] / r["published_tflops"] - 1), abs=0.06)
    assert data["summary"]["rows"] == 9
