"""Korthikanti et al. Table 4 (one 22B layer, TP=8 on DGX A100): every published forward,
backward and combined time within 5% (measured 0.1-3.1%, README), and the
paper's own orderings."""

import pytest

from calibration.validate_korthikanti import run, summary


def test_korthikanti_table4_layer_times():
    df = run().set_index("experiment")
    assert summary(df.reset_index())["max_abs_error_pct"] < 5
    fwd, bwd = df.forward_predicted_ms, df.backward_predicted_ms
    # Sequence parallelism splits the norm/dropout work over the 8 ranks: faster forward.
    assert fwd["sequence_parallel_only"] < fwd["baseline_no_recompute"]
    # Full recompute re-runs the forward inside backward; selective only the attention core.
    assert bwd["full_recompute"] - bwd["baseline_no_recompute"] == \
        pytest.approx(fwd["baseline_no_recompute"], rel=1e-9)
    assert 0 < bwd["selective_recompute_only"] - bwd["baseline_no_recompute"] \
        < 0.25 * (bwd["full_recompute"] - bwd["baseline_no_recompute"])
