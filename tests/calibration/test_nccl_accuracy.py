"""Flow-model collectives vs the reference nccl-tests sweeps (calibration/validate_nccl.py):
each system's built-in profile must keep its sweeps' busbw geomean |error| <= 10%.
In-sample: the fabric sections are fitted on these sweeps; the held-out figures are in
tests/calibration/test_fabric_fit.py."""

import pytest

from calibration.validate_nccl import geomean_abs_error, predict, reference_sweeps

SWEEPS = {s.name: s for s in reference_sweeps()}
# The 8-node echo A100 log (fitted with the 2-node one for the per-tree-level latency and
# the tree's LL store-and-forward) has rows no smooth curve follows: its 1 KiB row (294 us)
# is 4x its 2 KiB row, and 16-32 KiB rise above the tree LL line the other sizes set
# (docs/accuracy.md, "Multi-node collectives at small and medium sizes"): 11.6%.
BOUND = {"echo A100-40GB 64 GPU": 0.12}


@pytest.mark.parametrize("name", list(SWEEPS))
def test_sweep_geomean_within_10_pct(name):
    rows = predict(SWEEPS[name])
    assert geomean_abs_error(rows.predicted_us, rows.measured_us) <= BOUND.get(name, 0.10)


@pytest.mark.parametrize("name", list(SWEEPS))
def test_system_defaults_to_the_profile_fitted_on_its_sweeps(name):
    """A user who names the system (``collective --system``, a scenario without
    ``cluster.profile``) gets the profile fitted on that system's own sweeps."""
    from hw_models import catalog
    s = SWEEPS[name]
    assert catalog.system(s.system).default_profile == s.profile


def test_collective_cli_uses_the_systems_profile():
    """Azure NDm A100 v4's own sweep: 64 MiB all_reduce on 8 GPUs, 166.63 GB/s busbw
    measured; the echo-fitted profile of the GPU would give about 191 (+15%)."""
    import json

    from typer.testing import CliRunner

    from sim.cli.main import app
    out = CliRunner().invoke(app, ["collective", "--system", "azure-ndm-a100-v4",
                                   "--min-bytes", "64M", "--max-bytes", "64M", "--format", "json"])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.output)
    assert row["busbw_gb_s"] == pytest.approx(166.63, rel=0.05)


def test_h100_8_gpu_out_of_sample():
    """Vidur's DGX H100 all_reduce (PyTorch-timed, 8 GPUs, 1-64 MiB) is not fitted on:
    the h100 profile, fitted on NVIDIA's NVLS nccl-tests sweep, predicts it within 10%.
    (2 and 4 GPUs miss by 30% and 22%: docs/accuracy.md.)"""
    from calibration.validate_nccl import check_sweeps, validate
    rows = validate()
    assert set(rows.sweep[~rows.fitted]) == {s.name for s in check_sweeps()}
    (h8,) = [s for s in check_sweeps() if s.gpus == 8 and s.name.startswith("Vidur")]
    r = predict(h8)
    assert geomean_abs_error(r.predicted_us, r.measured_us) <= 0.10
