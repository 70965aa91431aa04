"""A synchronous training job runs at its slowest GPU's pace: compute time x (1 + cv E[max of
N normals]) with the profile's measured step spread; the spread is the pooled run-to-run
coefficient of variation of the H100 step logs, computed here by hand from the files."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from hw_models.compute import expected_max_normal
from hw_models.profile import load_builtin
from sim.scenario import parse
from sim.simulate import simulate

REPO = Path(__file__).parents[2]


def test_h100_spread_is_the_pooled_cv_of_the_step_logs():
    cvs = []
    for name in ("gpu_steps.json", "gpu_steps_compiled.json"):
        for row in json.loads((REPO / "calibration/measured/h100" / name).read_text())["rows"]:
            s = np.array(row["steps_s"])
            cvs.append(np.std(s, ddof=1) / np.mean(s))
    assert len(cvs) == 12
    assert load_builtin("h100").variability.step_cv == pytest.approx(
        np.sqrt(np.mean(np.square(cvs))), abs=1e-5)


def _scenario(profile: str, nodes: int, system: str = "dgx-h100") -> dict:
    return {"name": "pace", "cluster": {"system": system, "nodes": nodes, "profile": profile},
            "workload": {"kind": "training", "model": "megatron-1.7b", "global_batch": 8 * nodes,
                         "micro_batch": 1, "precision": "bf16",
                         "parallel": {"tp": 1, "pp": 1}},
            "sim": {"fidelity": "analytical"}}


@pytest.mark.parametrize("nodes", [1, 4])
def test_compute_runs_at_the_slowest_gpus_pace(tmp_path, nodes):
    prof = yaml.safe_load((REPO / "calibration/profiles/h100.yaml").read_text())
    cv = prof["variability"]["step_cv"]
    del prof["variability"]
    flat = tmp_path / "h100-no-spread.yaml"
    flat.write_text(yaml.safe_dump(prof))
    run = {p: simulate(parse(_scenario(p, nodes), "pace"), band=False, residuals=False)
           for p in ("h100", str(flat))}
    ratio = run["h100"].breakdown["compute"] / run[str(flat)].breakdown["compute"]
    assert ratio == pytest.approx(1 + cv * expected_max_normal(8 * nodes), rel=1e-9)


def test_an_a100_job_waits_for_the_slowest_chip(tmp_path):
    """The A100 profiles carry the spread between GPUs only (gpu_cv, no step log)."""
    prof = yaml.safe_load((REPO / "calibration/profiles/a100.yaml").read_text())
    cv = prof.pop("variability")["gpu_cv"]
    flat = tmp_path / "a100-no-spread.yaml"
    flat.write_text(yaml.safe_dump(prof))
    run = {p: simulate(parse(_scenario(p, 2, "dgx-a100"), "pace"), band=False, residuals=False)
           for p in ("a100", str(flat))}
    ratio = run["a100"].breakdown["compute"] / run[str(flat)].breakdown["compute"]
    assert ratio == pytest.approx(1 + cv * expected_max_normal(16), rel=1e-9)



def _serving(profile: str, tp: int) -> dict:
    return {"name": "pace-serving",
            "cluster": {"system": "dgx-h100", "nodes": 1, "profile": profile},
            "workload": {"kind": "inference", "model": "llama3-8b", "precision": "fp16",
                         "parallel": {"tp": tp, "pp": 1}, "replicas": 1,
                         "scheduler": {"policy": "static", "max_batch": 1},
                         "requests": {"count": 1, "arrival": "burst",
                                      "prompt_len": {"dist": "uniform", "low": 512, "high": 512},
                                      "output_len": {"dist": "uniform", "low": 16, "high": 16},
                                      "seed": 0}}}


@pytest.mark.parametrize("tp", [1, 4])
def test_a_serving_replica_waits_for_its_slowest_gpu(tmp_path, tp):
    """A replica of tp GPUs is a synchronous group too: one GPU alone is unchanged, at TP 4
    the iteration is slower, by at most the pace factor (its collectives are not scaled)."""
    prof = yaml.safe_load((REPO / "calibration/profiles/h100.yaml").read_text())
    cv = prof.pop("variability")["step_cv"]
    flat = tmp_path / "h100-no-spread.yaml"
    flat.write_text(yaml.safe_dump(prof))
    ttft = {p: simulate(parse(_serving(p, tp), "pace")).requests.ttft_s.iloc[0]
            for p in ("h100", str(flat))}
    ratio = ttft["h100"] / ttft[str(flat)]
    if tp == 1:
        assert ratio == 1.0
    else:
        assert 1.0 < ratio <= 1 + cv * expected_max_normal(tp) + 1e-12
