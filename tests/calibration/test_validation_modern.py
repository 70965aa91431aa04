"""Validation tables of the long-context, FP8 and dense suites (predicted vs published,
calibration/reference/modern): the rows a dashboard collects, and the accuracy targets
that hold today (the misses are reported by ``clustersim validate``, docs/long_context.md)."""

import pytest

from calibration import validate_dense, validate_fp8, validate_long_context
from calibration.validate_modern import run

KEYS = {"suite", "name", "predicted", "published", "error_pct", "low", "high", "status"}


def test_rows_are_dicts_with_the_dashboard_keys():
    cases = validate_long_context.cases()
    rows = run([c for c in cases if "4 GPUs" in c.name])        # one compared, one skipped
    assert {r["status"] for r in rows} == {"ok", "skipped"}
    assert all(KEYS <= r.keys() and r["suite"] == "long-context" for r in rows)
    skipped = next(r for r in rows if r["status"] == "skipped")
    assert skipped["predicted"] is None and skipped["note"]


NEMO_H100 = [c for c in validate_long_context.cases()
             if c.name.startswith("NeMo Llama 2 7B H100") and not c.skip]


def test_nemo_long_sequence_h100_median_within_10pct():
    """Llama 2 7B, 4K to 1M tokens, CP 1 to 32: median within 10%, every row within 20%
    (the short sequences come out fast: 4K +15%, 8K +12%)."""
    rows = run(NEMO_H100)
    errors = sorted(abs(r["error_pct"]) for r in rows)
    assert len(rows) == 9 and errors[len(errors) // 2] <= 10 and errors[-1] <= 20, rows


DGXC = [c for c in validate_fp8.cases() if (c.name.startswith("DGXC") and " 8 H100" in c.name)
        or (c.pair.startswith("TORCHTITAN-H100-202412") and "8B-8-" in c.pair)]


def test_fp8_bf16_speed_up_within_5_points():
    rows = run(DGXC)
    for c, r in zip(DGXC, rows, strict=True):
        r["pair"] = c.pair
    pairs = validate_fp8.pairs(rows)
    assert len(pairs) == 3                  # DGX Cloud 24.09 and 25.02, TorchTitan 8B on 8 GPUs
    assert all(abs(p["points"]) <= 5 for p in pairs), pairs
    assert all(abs(r["error_pct"]) <= 10 for r in rows if r["name"].startswith("DGXC")), rows


MLM_FP8 = [c for c in validate_dense.cases() if c.name.startswith("Megatron FP8")]


@pytest.mark.parametrize("case", MLM_FP8, ids=lambda c: c.name)
def test_megatron_llama_fp8_within_10pct(case):
    row = run([case])[0]
    assert abs(row["error_pct"]) <= 10, row


def test_validate_dense_command_prints_rows_and_summary():
    import json
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "sim.cli.main", "validate", "dense", "--format",
                          "json"], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    assert data["summary"]["compared"] == len(data["rows"]) == 4
    assert all(KEYS <= r.keys() for r in data["rows"])


def test_weak_scaling_rows_belong_to_one_suite():
    """Megatron-LM's H100 weak-scaling rows are the megatron-h100 suite's, not dense's
    too (the dashboard would count them twice): the same nine published rows."""
    from calibration import validate_megatron_h100
    from calibration.validate_modern import read
    assert not any("weak scaling" in c.name.lower() for c in validate_dense.cases())
    dense = read("dense_training_reference.csv")
    weak = dense[dense.source_id == validate_dense.WEAK_SCALING]
    h100 = validate_megatron_h100.rows()
    key = ["num_gpus", "tp", "pp", "global_batch_seqs", "model_tflops_per_gpu"]
    assert len(weak) == len(h100) == 9
    assert sorted(map(tuple, weak[key].astype(float).values)) == \
        sorted(map(tuple, h100[key].astype(float).values))


TITAN_FP8_8B = {c.extra["gpu"] + f" {c.scenario['cluster']['nodes'] * 8}": c for c in validate_fp8.cases()
                if c.name.startswith("TorchTitan Llama 3.1 8B") and "Float8" in c.name and not c.skip}


def test_torchtitan_h200_rows_run_the_grand_teton_recipe_on_dgx_h200():
    """Trainy's H200 table runs TorchTitan's Llama 3 8B Float8 recipe (FSDP, local batch 2,
    per-op SAC, seq 8192 from llama3_8b.toml at e7c0cae) at 700 W: the same workload as the
    Grand Teton rows, on dgx-h200."""
    h200, teton = TITAN_FP8_8B["H200 32"], TITAN_FP8_8B["H100 8"]
    assert h200.scenario["cluster"]["system"] == "dgx-h200"
    assert teton.scenario["cluster"]["system"] == "grand-teton-h100"
    same = ("seq_len", "micro_batch", "precision", "recompute", "fp8", "model")
    assert {k: h200.scenario["workload"][k] for k in same} == \
        {k: teton.scenario["workload"][k] for k in same}
    assert h200.scenario["workload"]["seq_len"] == 8192
    assert h200.scenario["workload"]["global_batch"] == 32 * 2


@pytest.mark.xfail(strict=True, reason=(
    "a known miss: predicted 1.360 / 1.351 against 1.282 / 1.283 published (+6.1 / +5.3%) since "
    "TorchTitan's memory-bound step costs are priced (complex RoPE, FSDP2 copies, the eager "
    "loss and foreach AdamW of the December 2024 rows), which weigh twice as much on the "
    "Grand Teton's 2.4 TB/s HBM2e as on the H200's 4.8 TB/s (docs/fp8.md)"))
def test_torchtitan_h200_over_grand_teton_speed_up_matches_published():
    """The same Float8 recipe on a 700 W H200 against the 500 W Grand Teton H100 (NVL peaks):
    published 10,938 / 8,532 = 1.28 (32 vs 8 GPUs) and 10,753 / 8,380 = 1.28 (64 vs 128).
    The target: the predicted speed-up within 5% of both. Each row on its own is 7-15% fast,
    so the offset is common to TorchTitan's runs at 700 W and at 500 W, not the power
    cap's."""
    for h, t in (("H200 32", "H100 8"), ("H200 64", "H100 128")):
        rh, rt = run([TITAN_FP8_8B[h], TITAN_FP8_8B[t]])
        pred, pub = rh["predicted"] / rt["predicted"], rh["published"] / rt["published"]
        assert abs(pred / pub - 1) <= 0.05, (h, t, pred, pub)


def test_megatron_bridge_nvfp4_rows_run_without_tp_overlap():
    """Megatron-Bridge's Llama NVFP4 performance recipes set tp_comm_overlap False (v0.3.0-
    v0.6.0); the same releases' FP8 / MXFP8 rows keep the userbuffers ring overlap."""
    mb = [c for c in validate_fp8.cases() if c.name.startswith("MB-PERF") and c.scenario]
    nvfp4 = [c for c in mb if c.name.endswith(" NVFP4")]
    mxfp8 = [c for c in mb if c.name.endswith(" MXFP8")]
    assert len(nvfp4) == 18 and mxfp8
    for c in nvfp4:
        par = c.scenario["workload"]["parallel"]
        assert par.get("tp_comm_overlap", "none") == "none", c.name
    assert {c.scenario["workload"]["parallel"].get("tp_comm_overlap") for c in mxfp8
            if c.scenario["workload"]["parallel"]["tp"] > 1} == {"ring"}
