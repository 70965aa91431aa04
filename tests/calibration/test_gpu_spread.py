"""The A100's spread between GPUs: the robust coefficient of variation of the per-GPU mean
ResNet-50 step times of TACC Lonestar6's 219 A100s (PAL's artifact), computed here by hand
from the committed file and compared with the built-in profiles."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calibration.build_profiles import GPU_SPREAD, gpu_spread
from hw_models.profile import load_builtin

DATA = Path(__file__).parents[2] / "calibration/reference" / GPU_SPREAD


def test_robust_cv_by_hand(tmp_path):
    # median 1.00; absolute deviations 0, 0, 0.02, 0.02, 1.0 -> MAD 0.02; x 1.4826
    f = tmp_path / "steps.csv"
    f.write_text("# hand table\nmean_iter_dur_mean\n1.0\n1.0\n1.02\n0.98\n2.0\n")
    assert gpu_spread(str(f)) == {"gpu_cv": pytest.approx(0.029652, abs=1e-5)}


def test_lonestar6_table_is_219_gpus_on_73_nodes_with_two_slow_nodes():
    d = pd.read_csv(DATA, comment="#")
    assert len(d) == 219 and d.groupby(["cabinet", "node"]).ngroups == 73
    rel = d.mean_iter_dur_mean / d.mean_iter_dur_mean.median()
    slow = d[rel > 1.5]
    # the 2x outliers are whole nodes (a node-level fault), not a spread between chips
    assert len(slow) == 6 and slow.groupby(["cabinet", "node"]).ngroups == 2


@pytest.mark.parametrize("name", ["a100", "a100-dgx", "a100-ndm-v4"])
def test_a100_profiles_carry_the_lonestar6_spread(name):
    x = pd.read_csv(DATA, comment="#").mean_iter_dur_mean.to_numpy()
    med = np.median(x)
    cv = 1.4826 * np.median(np.abs(x - med)) / med
    var = load_builtin(name).variability
    assert var.gpu_cv == pytest.approx(cv, abs=1e-5)
    assert var.step_cv == 0.0            # no A100 step log: no run-to-run part
    assert var.cv == var.gpu_cv
    assert 0.015 < cv < 0.017


def test_h100_spread_is_unchanged():
    var = load_builtin("h100").variability
    assert (var.step_cv, var.gpu_cv, var.cv) == (0.01679, 0.0, 0.01679)
