"""DeepSeek-V4-Flash through the CLI: training at both fidelities, serving, and the plans
clustersim refuses for it (exit 2, one error line)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.sim.hardening_helpers import cli, one_error_line

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "examples/deepseek_v4_flash_h100.yaml"
SERVE = ROOT / "examples/inference_deepseek_v4_flash.yaml"


def _mfu(out: str) -> float:
    return float(re.search(r"MFU / HFU\s+([\d.]+)%", out).group(1))


@pytest.mark.parametrize("fidelity", ["analytical", "flow"])
def test_training_runs_with_a_sane_mfu(fidelity, monkeypatch, capsys):
    """An MoE model of 13B active parameters on H100s: MFU well inside (5%, 60%)."""
    code, out, err = cli(monkeypatch, capsys, "simulate", TRAIN, "--set", f"sim.fidelity={fidelity}")
    assert code == 0, err
    assert 5 < _mfu(out) < 60


def test_serving_runs(monkeypatch, capsys):
    code, out, err = cli(monkeypatch, capsys, "simulate", SERVE)
    assert code == 0, err
    assert "KV cache peak" in out


@pytest.mark.parametrize(("args", "needle"), [
    ((SERVE, "--set", "workload.parallel.tp=16", "--set", "cluster.nodes=2"),
     "must divide the model's 8 output groups"),
    ((TRAIN, "--set", "workload.parallel.cp=2", "--set", "cluster.nodes=64"),
     "with DeepSeek-V4 attention is not modelled"),
])
def test_refused_plans(args, needle, monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "simulate", *args)
    assert code == 2, err
    assert needle in one_error_line(err)


def test_bad_inline_model_is_one_error_line(tmp_path, monkeypatch, capsys):
    """An inline DSV4 model with one compress_ratios entry too few: exit 2, one line."""
    import yaml

    from workloads.model import presets
    sc = yaml.safe_load(TRAIN.read_text())
    model = presets()["deepseek-v4-flash"].model_dump(exclude_none=True)
    model["attention"]["compress_ratios"] = model["attention"]["compress_ratios"][:42]
    sc["workload"]["model"] = model
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(sc))
    code, _, err = cli(monkeypatch, capsys, "simulate", f)
    assert code == 2, err
    assert "compress_ratios has 42 entries" in one_error_line(err)
