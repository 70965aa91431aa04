"""DeepSeek-V3, Kimi K2 and DeepSeek-V4 Flash training rows: predicted vs published throughput
per GPU.

Rows: calibration/reference/modern/mbperf_moe_training.csv (Megatron-Bridge's published
pre-training runs, 25.09-26.08). The metric and the error are those of the other MoE rows
(calibration/validate_moe.py): tokens/s per GPU, error = predicted / published - 1.

A row is run like the other Megatron-Bridge rows (its GPUs, sequence, batch sizes, tp / pp /
vp / ep as published, the distributed optimizer, balanced routing, GB200 / GB300 jobs in
64-GPU NVLink segments, the memory check off) with what its release's recipe sets
(calibration/mbperf_recipes.py): the dispatcher (HybridEP on 32 SMs, DeepEP or NCCL
all-to-all), the all-to-all overlap, the CUDA-graph scopes (those the simulator knows,
workloads/host_launch.SCOPES; the others run eager), the recompute modules, the MTP depth,
the recipe's pipeline layout (layers per virtual stage), the router fusion and the
sequence-level auxiliary loss, the DSA indexer loss (``attention.indexer_loss``),
Transformer Engine's fused grouped MLP, FP8 attention, the MXFP8 recipe of the precision
label.

Skipped rows say why: a model with no preset, a token-dropping run, a release whose recipe is
not read, a published plan (micro batch, pp, vp, ep) that differs from the plan of its
release's recipe (the run's other settings are then not known), a recipe setting the
workload cannot express (calibration/mbperf_recipes.py ``unmodelled``).
"""

from __future__ import annotations

import pandas as pd

from calibration import row_runner
from calibration.mbperf_recipes import published_plan, recipe, recompute_workload, unmodelled
from calibration.row_runner import FP8_RECIPE, _num
from workloads.model import presets


def rows() -> pd.DataFrame:
    return row_runner.read_rows("mbperf_moe_training.csv")


def skip_reason(row, zoo=None) -> str | None:
    """Why a row is not predicted; None where it is."""
    zoo = presets() if zoo is None else zoo
    gpu = str(row.gpu_type).split()[0]
    got = recipe(row)
    return row_runner.first_reason([
        row_runner.preset_check(row, zoo, " (architecture not collected)"),
        (lambda: "token-DROP" in str(row.notes), "token-dropping run: capacity factor not published"),
        row_runner.system_check(gpu), row_runner.precision_check(row),
        (lambda: got is None, "no recipe read for this model, GPU, precision and release"),
        (lambda: published_plan(row) != got["plan"],
         lambda: (f"published plan (mbs, pp, vp, ep) {published_plan(row)} differs from the release's "
                  f"recipe {got['plan']}: the run's other settings are not known")),
        *row_runner.recipe_tail_checks(row, got, unmodelled),
    ])


def scenario_for(row, fidelity: str = "analytical") -> dict:
    """The scenario of a predicted row (its preset and recipe must exist)."""
    got = recipe(row)
    mbs, pp, vp, ep = published_plan(row)
    tp = int(row.tp)
    parallel = {"tp": tp, "pp": pp, "vpp": vp, "cp": int(_num(row.cp) or 1), "ep": ep, "etp": 1,
                "sequence_parallel": tp > 1, "zero": 1,
                "schedule": "interleaved" if vp > 1 else "1f1b"}
    if got["pipeline_layers"] and len(got["pipeline_layers"]) in (pp, pp * vp) and pp > 1:
        parallel["pipeline_layers"] = list(got["pipeline_layers"])
    fp8 = {"recipe": FP8_RECIPE.get(row_runner.label(row)),
           **({"dot_product_attention": True} if got["fp8_attention"] else {})}
    scenario = row_runner.training_scenario(
        row, mtp=got["mtp_layers"], micro_batch=mbs, fp8=fp8,
        recompute=recompute_workload(got["recompute_modules"]), parallel=parallel,
        moe={"dispatcher": got["dispatcher"], "overlap": got["overlap"],
             **({"hybridep_sms": got["hybridep_sms"]} if got["dispatcher"] == "hybridep" else {}),
             "router_fusion": got["router_fusion"], "aux_loss": got["aux_loss"],
             "fused_mlp": got["fused_mlp"]},
        cuda_graphs=got["cuda_graphs"], fidelity=fidelity, optimizer=got["optimizer"])
    if got["indexer_loss"] != "none":
        scenario["workload"]["model"] = _with_indexer_loss(scenario["workload"]["model"],
                                                           got["indexer_loss"])
    return scenario


def _with_indexer_loss(model, mode: str) -> dict:
    """The row's model (a preset name or inline) inline with ``attention.indexer_loss``."""
    spec = presets()[model].model_dump(exclude_none=True) if isinstance(model, str) else model
    return spec | {"attention": spec["attention"] | {"indexer_loss": mode}}


def _plan(row) -> str:
    mbs, pp, vp, ep = published_plan(row)
    return f"tp{row.tp} pp{pp} vpp{vp} ep{ep} mbs{mbs} gbs{row.global_batch_seqs}"


def run(predict, fidelity: str = "analytical") -> pd.DataFrame:
    """Every row: predicted tokens/s per GPU, or why skipped (row_runner.run_rows)."""
    return row_runner.run_rows(rows(), skip_reason, scenario_for, predict, fidelity, _plan)


def summary(df: pd.DataFrame) -> dict:
    return row_runner.summary(df)


def summary_line(s: dict) -> str:
    return row_runner.summary_line("DeepSeek / Kimi", s, "mbperf_moe_training.csv")
