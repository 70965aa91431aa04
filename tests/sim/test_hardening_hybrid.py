"""Bad input on the hybrid Mamba, Muon and recompute keys: one `error:` line naming what is
wrong and what is allowed, exit 2, no traceback."""

from __future__ import annotations

import pytest
import yaml

from tests.sim.hardening_helpers import cli, one_error_line
from workloads.model import presets

NANO = presets()["nemotron-3-nano"].model_dump(exclude_none=True)
TRAIN = {"name": "nano-train", "cluster": {"system": "dgx-h100", "nodes": 2},
         "workload": {"kind": "training", "model": "nemotron-3-nano", "seq_len": 8192,
                      "global_batch": 64, "micro_batch": 1, "precision": "bf16",
                      "parallel": {"tp": 2, "pp": 1, "ep": 8, "sequence_parallel": True,
                                   "zero": 1}},
         "sim": {"fidelity": "analytical"}}
SERVE = "examples/inference_nemotron3_nano.yaml"
RL = ["examples/rl_grpo_llama3_8b.yaml", "--set", "workload.model=nemotron-3-nano",
      "--set", "workload.train.parallel.ep=8"]


def refused(tmp_path, monkeypatch, capsys, scenario, *extra) -> str:
    if isinstance(scenario, dict):
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump(scenario))
        scenario = path
    code, _, err = cli(monkeypatch, capsys, "simulate", scenario, *extra)
    line = one_error_line(err)
    assert code == 2, err
    assert "Value error" not in line
    return line


def training(model: dict | None = None, **workload) -> dict:
    sc = yaml.safe_load(yaml.safe_dump(TRAIN))
    if model is not None:
        sc["workload"]["model"] = {k: v for k, v in (NANO | model).items() if v is not None}
    parallel = workload.pop("parallel", {})
    sc["workload"] |= workload
    sc["workload"]["parallel"] |= parallel
    return sc


P = NANO["hybrid_pattern"]


@pytest.mark.parametrize("model, says", [
    ({"hybrid_pattern": P[:-1] + "X"}, "hybrid_pattern holds ['X']: use M (Mamba), * (attention)"),
    ({"hybrid_pattern": P[:-1]}, "hybrid_pattern has 51 layers for layers: 52"),
    ({"mamba": None}, "hybrid_pattern has Mamba layers (M): give the mamba block"),
    ({"mamba": NANO["mamba"] | {"heads": 0}}, "mamba.heads: Input should be greater than 0"),
])
def test_malformed_hybrid_model(tmp_path, monkeypatch, capsys, model, says):
    line = refused(tmp_path, monkeypatch, capsys, training(model))
    assert line == f"error: inline model: {says}" or says in line


@pytest.mark.parametrize("mamba, tp", [({"heads": 63}, 2), ({"groups": 1}, 2), ({}, 16)])
def test_training_mamba_heads_and_groups_must_split_over_tp(tmp_path, monkeypatch, capsys, mamba, tp):
    sc = training({"mamba": NANO["mamba"] | mamba}, parallel={"tp": tp, "ep": 1})
    line = refused(tmp_path, monkeypatch, capsys, sc)
    assert f"tp={tp} must divide the model's" in line and "Mamba heads" in line


@pytest.mark.parametrize("workload, says", [
    ({"optimizer": "muon", "parallel": {"zero": 3}}, "optimizer muon runs with zero 0 or 1"),
    ({"optimizer": "muon", "offload": {"optimizer": True}}, "optimizer muon runs on the GPU"),
    ({"optimizer": "sgd"}, "workload.optimizer: Input should be 'adam' or 'muon' (got 'sgd')"),
    ({"recompute": "mla_up_proj"}, "recompute mla_up_proj re-runs MLA's up projections: the model has no MLA"),
    ({"optimizer": "muon"}, "optimizer muon: the matrices of hybrid (Mamba) models are not listed; "
                            "use optimizer adam"),
])
def test_optimizer_and_recompute_keys(tmp_path, monkeypatch, capsys, workload, says):
    assert says in refused(tmp_path, monkeypatch, capsys, training(**workload))


@pytest.mark.parametrize("extra, says", [
    (("--set", "workload.parallel.ep=2"), "parallel.ep > 1 with a hybrid Mamba model is not modelled"),
    (("--set", "workload.model=nemotronh-56b"),
     "weights take 104.9 GiB per GPU, leaving no room for one sequence's KV and Mamba state"),
    # vLLM's MambaMixer2 asserts n_groups % tp == 0 or n_groups == 1 (8 groups, tp 16)
    (("--set", "workload.parallel.tp=16", "--set", "cluster.nodes=2"),
     "tp=16 must divide the Mamba groups (8), or the model have one group"),
])
def test_hybrid_serving_plans(tmp_path, monkeypatch, capsys, extra, says):
    assert says in refused(tmp_path, monkeypatch, capsys, SERVE, *extra)


@pytest.mark.parametrize("extra, says", [
    (("--set", "workload.rollout.parallel.tp=1"),
     "rollout: weights take 58.8 GiB per GPU, leaving no room for one sequence's KV and Mamba "
     "state in 60% of 80 GiB; raise tp or pp"),
    (("--set", "workload.rollout.parallel.tp=2", "--set", "workload.rollout.parallel.ep=2"),
     "rollout: parallel.ep > 1 with a hybrid Mamba model is not modelled for serving"),
])
def test_rl_rollouts_of_a_hybrid_model(tmp_path, monkeypatch, capsys, extra, says):
    assert says in refused(tmp_path, monkeypatch, capsys, *RL, *extra)


@pytest.mark.parametrize("args", [
    ("--set", "sim.fidelity=flow"),
    (SERVE, "--set", "workload.parallel.tp=2", "--set", "workload.requests.count=60"),
])
def test_hybrid_runs_are_deterministic(tmp_path, monkeypatch, capsys, args):
    """The same hybrid training (flow fidelity) or serving scenario twice: identical JSON."""
    if args[0] != SERVE:
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump(TRAIN))
        args = (path, *args)
    runs = [cli(monkeypatch, capsys, "simulate", *args, "--format", "json", limit_s=120)
            for _ in range(2)]
    assert runs[0][0] == 0, runs[0][2]
    assert runs[0][1] == runs[1][1] and runs[0][1].lstrip().startswith("{")
