"""The Megatron-Core MoE team's best-practice runs: predicted vs published throughput per GPU.

Rows: calibration/reference/modern/moe_modelzoo_best_practice.csv (yanring/Megatron-MoE-ModelZoo
best_practice/qwen3: Qwen3-235B-A22B on 256 H100 under five plans, the same model at 16K to
128K tokens with context parallelism, on GB200 and GB300). They run Megatron-Core outside
Megatron-Bridge with plans NVIDIA's tables do not publish (pipeline 32 with the all-to-all
dispatcher, TP 4 with DeepEP, Megatron FSDP), so they check the MoE training model out of
sample. Nothing is fitted to them.

Each row runs as Megatron-LM's own recipes do (validate_mlm_recipes ``scenario_for``: plan,
dispatcher, all-to-all overlap, CUDA-graph scopes, recompute modules or full recompute,
force-balanced routing with the aux loss and the fused router, the distributed optimizer),
with what these runs add: Megatron FSDP (``zero: 3``) where the table says so, and a GB200 /
GB300 job's NVLink segment (``SEGMENT`` trays of 4 GPUs) as its NVLink domain. The published figure is the
step time where the table gives one (global batch x sequence / step / GPUs), else Megatron's
model TFLOP/s over Megatron's FLOP count at the row's sequence length.
"""

from __future__ import annotations

import pandas as pd

from calibration import row_runner, validate_mlm_recipes

CSV = "moe_modelzoo_best_practice.csv"


def rows() -> pd.DataFrame:
    return row_runner.read_rows(CSV)


skip_reason = validate_mlm_recipes.skip_reason


def scenario_for(row, fidelity: str = "analytical") -> dict:
    """The scenario of a predicted row: Megatron-LM's recipe scenario with Megatron FSDP
    and the job's NVLink segment where the row gives them."""
    sc = validate_mlm_recipes.scenario_for(row, fidelity)
    if row.fsdp == "true":
        sc["workload"]["parallel"]["zero"] = 3
    if pd.notna(row.segment):
        sc["cluster"]["system"]["scale_up"]["domain_gpus"] = 4 * int(row.segment)
    return sc


def run(predict, fidelity: str = "analytical") -> pd.DataFrame:
    """Every row: predicted tokens/s per GPU, or why skipped (validate_mlm_recipes.run)."""
    return validate_mlm_recipes.run(predict, fidelity, rows(), scenario_for)


summary = row_runner.summary


def summary_line(s: dict) -> str:
    return row_runner.summary_line("Megatron-MoE-ModelZoo best practices", s, CSV)
