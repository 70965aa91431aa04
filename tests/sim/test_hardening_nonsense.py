"""Inputs that used to give a silent, wrong answer: now an error or a warning."""

from __future__ import annotations

import re
import warnings

import pytest

from hw_models import catalog
from hw_models.errors import ClusterSimError, ClusterSimWarning
from sim import scenario
from sim.simulate import resolve_setup
from tests.sim.hardening_helpers import cli, one_error_line


@pytest.mark.parametrize("key", sorted(catalog.gpus()))
def test_every_missing_dtype_is_refused_by_name(key):
    gpu = catalog.gpu(key)
    for dtype in ("fp32", "tf32", "fp16", "bf16", "fp8", "fp4"):
        if dtype in gpu.peak_tflops:
            assert gpu.peak_flops(dtype) == gpu.peak_tflops[dtype] * 1e12
        else:
            with pytest.raises(ClusterSimError, match=f"{re.escape(gpu.name)} does not support {dtype}"):
                gpu.peak_flops(dtype)


def test_fp8_training_on_an_a100(monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "simulate", "--default", "--set", "workload.precision=fp8",
                       "--set", "cluster.system=dgx-a100")
    line = one_error_line(err)
    assert code == 2
    assert "workload.precision" in line and "A100" in line and "bf16, fp16, fp32, fp64, tf32" in line


def test_fp8_training_on_an_h100_runs():
    """precision fp8 is a recipe (docs/fp8.md): linear GEMMs in FP8, the rest in BF16."""
    sc = scenario.default(["workload.precision=fp8"])
    opts = resolve_setup(sc).options
    assert opts.fp8_recipe == "delayed" and opts.dtype == "bf16"


def test_fp8_serving_on_an_a100(monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "simulate", "examples/inference_llama3_70b.yaml",
                       "--set", "workload.precision=fp8", "--set", "cluster.system=dgx-a100")
    assert code == 2 and "does not support fp8" in one_error_line(err)


def test_fp8_what_if_needs_it_on_the_target(monkeypatch, capsys):
    trace = "tests/data/traces/a100_simple_add_kineto.json.gz"
    code, _, err = cli(monkeypatch, capsys, "replay", trace, "--source-system", "dgx-a100",
                       "--set", "dtype=fp8")
    assert code == 2 and "--set dtype" in one_error_line(err)
    code, _, _ = cli(monkeypatch, capsys, "replay", trace, "--source-system", "dgx-a100",
                     "--target-system", "dgx-h100", "--set", "dtype=fp8")
    assert code == 0


@pytest.mark.parametrize("tp, pp, warned", [(16, 4, True), (8, 8, False)])
def test_tp_spanning_nodes_warns(tp, pp, warned):
    sc = scenario.default([f"workload.parallel.tp={tp}", f"workload.parallel.pp={pp}",
                           "workload.parallel.vpp=1", "workload.parallel.schedule=1f1b"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resolve_setup(sc)
    ours = [w for w in caught if issubclass(w.category, ClusterSimWarning)]
    assert bool(ours) == warned
    if warned:
        assert "tp 16 spans 2 nodes (8 GPUs per node)" in str(ours[0].message)


def test_tp_warning_reaches_the_user(monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "simulate", "--default", "--set", "workload.parallel.tp=16",
                       "--set", "workload.parallel.pp=4")
    assert code == 0 and err.startswith("warning: tp 16 spans 2 nodes")


def test_absurd_bandwidth_prints_readable_times(monkeypatch, capsys):
    code, out, _ = cli(monkeypatch, capsys, "simulate", "--default", "--set",
                       "cluster.network.nic_gbps=1e-30")
    assert code == 0
    assert not re.search(r"\d{12,}", out), out       # no 31-digit seconds
    assert re.search(r"iteration time\s+\d\.\d+e\+\d\d s", out)


def test_everyday_times_keep_three_decimals():
    from sim.cli.common import fmt_s
    assert [fmt_s(x) for x in (0.0, 0.0123, 4.978, 12345.6789)] == ["0.000", "0.012", "4.978", "12345.679"]
    assert [fmt_s(x) for x in (1e-5, 2.752e32)] == ["1e-05", "2.752e+32"]


def test_fp64_router_on_a_part_without_an_fp64_peak(monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "simulate", "examples/deepseek_v3_h100.yaml",
                       "--set", "workload.moe.router_dtype=fp64", "--set", "cluster.system=dgx-b200")
    line = one_error_line(err)
    assert code == 2
    assert "workload.moe.router_dtype" in line and "B200" in line and "fp64" in line
