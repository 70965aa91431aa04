"""The shared row loop of the training-row validations (calibration/row_runner.py)."""

import math
from types import SimpleNamespace

import pandas as pd

from calibration import row_runner
from hw_models.errors import ClusterSimError


def test_first_reason_is_the_first_failing_check_and_later_checks_are_not_run():
    def boom():
        raise AssertionError("a check after the failing one ran")
    checks = [(False, "a"), (lambda: True, lambda: "b built"), (boom, "c")]
    assert row_runner.first_reason(checks) == "b built"
    assert row_runner.first_reason([(False, "a"), (lambda: False, "b")]) is None


def test_common_checks():
    row = SimpleNamespace(precision="NVFP4 (experts)", throughput_tokens_per_s_per_gpu="1234.5")
    assert row_runner.first_reason([row_runner.system_check("A100")]) == "no A100 system in the catalog"
    assert row_runner.first_reason([row_runner.system_check("H100"), row_runner.precision_check(row)]) is None
    assert row_runner.first_reason([row_runner.precision_check(SimpleNamespace(precision="FP4"))]) == \
        "precision FP4 not mapped"
    assert row_runner.first_reason(row_runner.recipe_tail_checks(row, {}, lambda r: ["x", "y"])) == \
        "recipe sets what the simulator does not model: x; y"
    row.throughput_tokens_per_s_per_gpu = "n/a"
    assert row_runner.first_reason(row_runner.recipe_tail_checks(row, {}, lambda r: [])) == \
        "no throughput published"


def test_run_rows_predicts_skips_and_reports_refused_scenarios():
    frame = pd.DataFrame({"source_id": ["S"] * 3, "arch_id": ["m1", "m2", "m3"],
                          "gpu_type": ["H100 SXM"] * 3, "num_gpus": ["8"] * 3,
                          "precision": ["BF16"] * 3, "throughput_tokens_per_s_per_gpu": ["1000"] * 3})

    def predict(sc):
        if sc == "m3":
            raise ClusterSimError("too big")
        return 1100.0, {"iteration_s": 2.0}
    out = row_runner.run_rows(frame, lambda row, zoo: "no preset" if row.arch_id == "m2" else None,
                              lambda row, fidelity: row.arch_id, predict, plan=lambda row: "tp1")
    assert list(out.skipped) == ["", "no preset", "not simulated: too big"]
    assert out.predicted_tok_s_gpu[0] == 1100.0 and out.error_pct[0] == 10.0
    assert out.iteration_s[0] == 2.0 and math.isnan(out.error_pct[1])
    assert list(out.gpu) == ["H100"] * 3 and list(out.plan) == ["tp1"] * 3
