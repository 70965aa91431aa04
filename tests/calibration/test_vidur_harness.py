"""What Vidur's collective timings hold (calibration/vidur_harness.py): the harness floor
below 1 MiB, the max(model, floor) trial, and the time steps of the H100 NVLS sweeps at
NCCL's loop boundaries."""

import numpy as np
import pandas as pd
import pytest

from calibration import vidur_harness as vh

MIB = 2 ** 20


def test_harness_floor_is_the_median_below_1_mib():
    rows = pd.DataFrame({"size_bytes": [2048, 4096, 8192, MIB, 2 * MIB],
                         "time_us": [40.0, 10.0, 30.0, 1.0, 2.0]})
    assert vh.harness_floor(rows) == 30.0


def test_floor_trial_applies_max_per_sweep(monkeypatch):
    monkeypatch.setattr(vh, "floors", lambda: pd.DataFrame(
        {"sweep": ["s"], "floor_below_1MiB_us": [40.0]}))
    rows = pd.DataFrame({"sweep": ["s", "s"], "predicted_us": [20.0, 80.0],
                         "measured_us": [40.0, 80.0]})
    (r,) = vh.floor_trial(rows).to_dict("records")
    # as predicted: |ln(20/40)| and 0 -> exp(0.3466) - 1 = 41.4%; floored: exact.
    assert r["geomean_pct"] == pytest.approx(100 * (np.sqrt(2) - 1), abs=0.05)
    assert r["with_floor_pct"] == 0.0


def test_floors_of_the_vidur_sweeps():
    """Per GPU count: the H100 4-GPU rows at 1-2 MiB (NVLS) sit below the floor of its
    sub-MiB (ring LL) sizes, the A100 2-GPU ones too: a floor that holds for every row
    does not exist (docs/fabric.md)."""
    f = vh.floors().set_index("sweep")
    assert len(f) == 6
    h4, a2 = f.loc["Vidur DGX H100 4 GPU"], f.loc["Vidur DGX A100 2 GPU"]
    assert h4.median_1_2MiB_us < h4.floor_below_1MiB_us - 5
    assert a2.envelope_1_2MiB_us < a2.floor_below_1MiB_us - 5


def test_8_gpu_nvls_steps_at_nccl_loop_boundaries():
    """On 8 H100s the time jumps where NCCL's NVLS loop count or chunk changes (every 2 MiB
    below 8 MiB, every 4 MiB above) and is nearly flat in between."""
    steps = vh.nvls_steps("h100").set_index("sweep").loc["Vidur DGX H100 8 GPU"]
    assert steps.boundaries == 6
    assert steps.jump_at_boundary_us > 10 * steps.jump_elsewhere_us


def test_loop_boundaries_by_hand():
    sizes = np.array([1.9, 2.0, 2.1, 3.9, 4.1]) * MIB
    # 8 GPUs: 2 MiB loops below 8 MiB -> one boundary between 2.0 and 2.1, one between
    # 3.9 and 4.1 MiB.
    assert list(vh.loop_boundaries(sizes, 8)) == [False, True, False, True]


def test_host_paced_rows_from_the_measurements_alone():
    """The rule reads only measured times: on DGX H100 the 2-GPU rows at 1, 1.4, 2 and
    4 MiB and the 4-GPU row at 1 MiB; no DGX A100 row."""
    from calibration.validate_nccl import check_sweeps, reference_sweeps
    rows = pd.concat([s.data.assign(sweep=s.name, measured_us=s.data.time_us, predicted_us=1.0)
                      for s in reference_sweeps() + check_sweeps()])
    hp = vh.host_paced(rows)
    paced = hp[hp.host_paced]
    assert sorted(zip(paced.sweep, (paced.size_bytes / MIB).round(1), strict=True)) == [
        ("Vidur DGX H100 2 GPU", 1.0), ("Vidur DGX H100 2 GPU", 1.4),
        ("Vidur DGX H100 2 GPU", 2.0), ("Vidur DGX H100 2 GPU", 4.0),
        ("Vidur DGX H100 4 GPU", 1.0)]
    assert len(hp) == 6 * 13
