"""TorchTitan's pipeline runs as its code at the benchmark's commit (9dec370) sets them up:
microbatches and stage splits worked out by hand from pipelining_utils.py."""

import pytest

from calibration import validate_schedules
from workloads.parallel import ParallelPlan


def test_pp_runs_use_torchtitan_default_microbatches():
    """pipeline_parallel_microbatches defaults to the PP degree: the local batch of 32
    (global 256 over FSDP 8) goes in 8 microbatches of 4 sequences."""
    cases = [c for c in validate_schedules.cases() if c.scenario]
    assert len(cases) == 2
    for c in cases:
        w = c.scenario["workload"]
        assert w["micro_batch"] == 4 and w["global_batch"] == 256
        assert w["global_batch"] // (8 * w["micro_batch"]) == 8


@pytest.mark.parametrize("vpp, stages", [
    # generate_split_points, 126 layers: base = 126 // n, the first stage base, the middle
    # ones base + 1 while the remainder lasts, the last what is left.
    (1, [15, 16, 16, 16, 16, 16, 16, 15]),
    (2, [7] + [8] * 14 + [7]),
])
def test_stage_split_matches_generate_split_points(vpp, stages):
    p = ParallelPlan(tp=8, pp=8, dp=8, micro_batch=4, global_batch=256, vpp=vpp,
                     schedule="interleaved" if vpp > 1 else "1f1b",
                     embedding_in_split=True, loss_in_split=True)
    pipe = p.pipeline(126)
    assert list(pipe.stage_layer_counts) == stages


def test_interleaved_over_1f1b_within_5_points():
    """TorchTitan Table 5: interleaved 1F1B 128 / 1F1B 100 tokens/s per GPU = 1.28. With
    8 microbatches 1F1B idles (p-1)/m of a stage, 2 virtual stages about half that."""
    rows = validate_schedules.rows()
    r = validate_schedules.ratio(rows)
    assert r["published"] == 1.28 and abs(r["points"]) <= 5, r
