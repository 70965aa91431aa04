"""`clustersim validate moe` as a test table: every published row is predicted or skipped
with a reason, and the measured accuracy does not regress (targets: docs/moe.md)."""

from __future__ import annotations

import pytest

from calibration.validate_moe import inference_rows, run, summary


@pytest.fixture(scope="module")
def table():
    return run()


@pytest.mark.slow
def test_every_row_predicted_or_skipped_with_a_reason(table):
    assert len(table) == 144
    done = table[table.skipped == ""]
    assert done.predicted_tok_s_gpu.notna().all() and done.error_pct.notna().all()
    assert (table[table.skipped != ""].predicted_tok_s_gpu.isna()).all()
    assert {"H100", "B200", "GB200"} <= set(done.gpu) <= {"H100", "B200", "GB200", "B300", "GB300"}


@pytest.mark.slow
def test_accuracy_does_not_regress(table):
    """Guards the measured level (H100 8.1%, B200 / GB200 15.2% with the catalog's Hopper
    profile, the context-parallel rows, the FP8 recipes' kernels on the expert GEMMs, the
    eager MoE layers' measured host cost, which moved H100 from 7.2% and B200 / GB200 from
    18.3%, and their wait for the slowest EP rank, 8.6% and 14.6% before); the H100 target
    is 10%, the Blackwell one 15% (docs/moe.md)."""
    s = summary(table)
    assert s["predicted"] >= 128          # only the rows the csv flags stay skipped
    assert not table.skipped.str.contains("context parallelism").any()
    assert s["median_abs_error_pct_h100"] < 9
    done = table[(table.skipped == "") & table.gpu.isin(["B200", "GB200"])]
    assert done.error_pct.abs().median() < 16


def test_serving_rows():
    inf = inference_rows()
    done = inf[inf.skipped == ""]
    assert len(done) == 5 and set(done.phase) == {"prefill", "decode"}


@pytest.mark.xfail(strict=True, reason=(
    "known miss (docs/moe.md, Serving): with DeepEP's kernels modelled (FP8 dispatch, "
    "pipelined normal kernels, low-latency decode kernels) the SGLang rows are compute-bound "
    "in the model and 20-73% too fast: its compute for DeepSeek-V3 (1.2-1.6 s per 16k "
    "prefill tokens per GPU where the iteration takes 2.3-2.6 s; 53 ms per decode step of "
    "256 sequences in two halves where it takes 92 ms) is too fast, as issue #16 reports for "
    "H100 decode"))
def test_serving_rows_median_within_25_percent():
    inf = inference_rows()
    assert inf[inf.skipped == ""].error_pct.abs().median() < 25
