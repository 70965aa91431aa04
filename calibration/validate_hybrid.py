"""Hybrid Mamba / attention MoE training rows: predicted vs published throughput per GPU.

Rows: calibration/reference/modern/hybrid_moe_training.csv (Megatron-Bridge's published
Nemotron 3 Nano, 3.5 Lightning, 3 Super and 3 Ultra pre-training runs, 26.02.01-26.08). The
metric and the error are those of the other MoE rows (calibration/validate_moe.py): tokens/s per
GPU, error = predicted / published - 1.

A row is run like the other Megatron-Bridge rows (its GPUs, sequence, batch sizes, tp / pp /
ep, sequence parallelism when tp > 1, the distributed optimizer, balanced routing, GB200 /
GB300 jobs in 64-GPU NVLink segments, the memory check off) with what its release's recipe
sets (calibration/hybrid_recipes.py): the HybridEP dispatcher and its SMs, the CUDA-graph
scopes (those the simulator knows, workloads/host_launch.SCOPES; the others run eager), the
recompute modules, the MTP depth, the router fusion, Megatron-FSDP (zero 3, sharded within
its NVLink domain), the FP8 recipe of the precision label (FP8: current scaling, MXFP8,
NVFP4).

Skipped rows say why: a model with no preset in the model zoo yet, a GPU with no system in
the catalog, a recipe setting the workload cannot express (calibration/hybrid_recipes.py
``unmodelled``).
"""

from __future__ import annotations

import pandas as pd

from calibration import row_runner
from calibration.hybrid_recipes import hybrid_recipe, recompute_workload, unmodelled
from calibration.row_runner import FP8_RECIPE, _num
from workloads.model import presets

REF = row_runner.REF


def rows() -> pd.DataFrame:
    return row_runner.read_rows("hybrid_moe_training.csv")


def skip_reason(row, zoo=None) -> str | None:
    """Why a row is not predicted; None where it is."""
    zoo = presets() if zoo is None else zoo
    gpu = str(row.gpu_type).split()[0]
    recipe = hybrid_recipe(row)
    return row_runner.first_reason([
        row_runner.preset_check(row, zoo),
        row_runner.system_check(gpu), row_runner.precision_check(row),
        (lambda: recipe is None, "no recipe read for this model, GPU and precision"),
        *row_runner.recipe_tail_checks(row, recipe, unmodelled),
    ])


def scenario_for(row, fidelity: str = "analytical") -> dict:
    """The scenario of a predicted row (its preset must exist)."""
    recipe = hybrid_recipe(row)
    tp = int(float(row.tp))
    parallel = {"tp": tp, "pp": int(float(row.pp)), "cp": int(_num(row.cp) or 1),
                "ep": int(float(row.ep)), "etp": 1, "sequence_parallel": tp > 1, "zero": 1,
                "schedule": "1f1b"}
    if recipe["fsdp"]:
        parallel |= {"zero": 3, "zero_shard_group": recipe["fsdp"]}
    return row_runner.training_scenario(
        row, mtp=recipe["mtp_layers"], micro_batch=int(row.micro_batch),
        fp8={"recipe": FP8_RECIPE.get(row_runner.label(row))},
        recompute=recompute_workload(recipe["recompute_modules"]), parallel=parallel,
        moe={"dispatcher": recipe["dispatcher"], "overlap": False,
             "hybridep_sms": recipe["hybridep_sms"], "router_fusion": recipe["router_fusion"]},
        cuda_graphs=recipe["cuda_graphs"], fidelity=fidelity)


def plan_text(row) -> str:
    return f"tp{row.tp} pp{row.pp} ep{row.ep} mbs{row.micro_batch} gbs{row.global_batch_seqs}"


def run(predict, fidelity: str = "analytical") -> pd.DataFrame:
    """Every hybrid row: predicted tokens/s per GPU, or why skipped."""
    return row_runner.run_rows(rows(), skip_reason, scenario_for, predict, fidelity, plan_text)


def summary(df: pd.DataFrame) -> dict:
    s = row_runner.summary(df)
    return {k: s[k] for k in ("rows", "predicted", "median_abs_error_pct")}


def summary_line(s: dict) -> str:
    med = f", median |error| {s['median_abs_error_pct']:.1f}%" if s["predicted"] else ""
    return f"hybrid {s['predicted']} of {s['rows']} predicted{med} (hybrid_moe_training.csv)"
