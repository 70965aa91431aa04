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


def _scenario(profile: str, nodes: int) -> dict:
    return {"name": "pace", "cluster": {"system": "dgx-h100", "nodes": nodes, "profile": profile},
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
