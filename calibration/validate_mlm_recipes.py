"""Megatron-LM's own MoE training recipes: predicted vs published throughput per GPU.

Rows: calibration/reference/modern/moe_mlm_recipes.csv (NVIDIA/Megatron-LM
examples/moe_recipes: one self-contained YAML per run and, in the recipe index, the run's
median model TFLOP/s per GPU). They are run outside Megatron-Bridge, with settings that
Bridge's tables do not combine (HybridEP on 16 SMs with an eager layer on H100, a 16-GPU
GB200 job, Megatron-Core's own CUDA-graph scopes per recipe), so they check the MoE training
model out of sample. Nothing is fitted to them.

Each row runs its recipe as the CSV states it: the plan (tp / pp / virtual stages / ep, the
embedding and the loss counted in the pipeline split where the layers do not divide), the
dispatcher and its SMs, the all-to-all overlap, the CUDA-graph scopes (those the simulator
knows), the recompute modules (``full``: full recompute), Transformer Engine's fused grouped MLP, the FP8 recipe of the
precision label, force-balanced routing with the aux loss and the fused router (in the
activations' 16-bit type, as Megatron-Bridge's rows run: the recipes' fp32 router GEMM is
not priced, and the catalog's GB300 has no fp32 rate), the distributed optimizer, GB200 /
GB300 jobs in 64-GPU NVLink segments, the memory check off.

The published figure is Megatron's model TFLOP/s, converted to tokens/s per GPU with
Megatron's own FLOP count (validate_eager_moe ``published`` and ``megatron_flops_per_token``:
grouped-query attention, MLA or DeepSeek-V4's hybrid attention, dense and MoE layers, MTP).
A recipe that offloads runs with it: ``offload_modules`` as ``offload.modules`` (Megatron-Core's
fine-grained activation offloading), ``offload_optimizer_states`` as
``offload.optimizer_states`` (``offload_keys``); an offload the simulator does not model is
listed and skipped with its reason. A recipe's ``pipeline_model_parallel_layout`` places the
layers of each virtual stage (``stage_layers``).
"""

from __future__ import annotations

import re

import pandas as pd

from calibration import row_runner, validate_eager_moe
from calibration.mbperf_recipes import recompute_workload
from calibration.row_runner import FP8_RECIPE
from workloads.model import presets

CSV = "moe_mlm_recipes.csv"


def rows() -> pd.DataFrame:
    return row_runner.read_rows(CSV)


def stage_layers(layout: str) -> list[int]:
    """Transformer layers per virtual stage of Megatron's ``pipeline_model_parallel_layout``:
    stages split by ``|``, ``t`` a transformer layer (``E`` the embedding, ``m`` an MTP
    layer, ``L`` the loss hold none), ``x*N`` and ``(...)*N`` repeat."""
    text = layout
    while "(" in text:
        text = re.sub(r"\(([^()]*)\)\*(\d+)", lambda g: g.group(1) * int(g.group(2)), text)
    text = re.sub(r"(\w)\*(\d+)", lambda g: g.group(1) * int(g.group(2)), text)
    return [stage.count("t") for stage in text.rstrip("|").split("|")]


def offload_keys(text) -> dict:
    """``workload.offload`` of a recipe's offload cell: module names (``offload_modules``),
    each optionally followed by ``activations``, and ``optimizer states``
    (``offload_optimizer_states``), parts split by ``;``."""
    if pd.isna(text):
        return {}
    out: dict = {}
    for part in str(text).split(";"):
        words = part.split()
        if words == ["optimizer", "states"]:
            out["optimizer_states"] = True
        else:
            out.setdefault("modules", []).extend(w for w in words if w != "activations")
    return out


def _offload_reason(row, model) -> str | None:
    """Why the simulator cannot run a row's offload, or None."""
    from workloads.offload_modules import unsupported
    modules = offload_keys(row.offload).get("modules", [])
    if not modules:
        return None
    recomputed = str(row.recompute_modules).split() if pd.notna(row.recompute_modules) else []
    why = unsupported(model, "full" if recomputed == ["full"] else "selective", modules)
    return f"recipe offloads to the host ({row.offload}): {why}" if why else None


def skip_reason(row, zoo=None) -> str | None:
    zoo = presets() if zoo is None else zoo
    gpu = str(row.gpu_type).split()[0]
    return row_runner.first_reason([
        row_runner.preset_check(row, zoo), row_runner.system_check(gpu),
        row_runner.precision_check(row),
    ]) or _offload_reason(row, zoo[row.arch_id])


def scenario_for(row, fidelity: str = "analytical") -> dict:
    """The scenario of a predicted row (its preset must exist)."""
    model = presets()[row.arch_id]
    tp, pp, vpp = int(row.tp), int(row.pp), int(row.vpp)
    parallel = {"tp": tp, "pp": pp, "vpp": vpp, "cp": int(row.cp), "ep": int(row.ep),
                "etp": int(row.etp), "sequence_parallel": tp > 1, "zero": 1,
                "schedule": "interleaved" if vpp > 1 else "1f1b"}
    if pd.notna(row.pipeline_layout):
        parallel["pipeline_layers"] = stage_layers(row.pipeline_layout)
    elif pp > 1 and model.layers % (pp * vpp):
        parallel |= {"account_for_embedding_in_pipeline_split": True,
                     "account_for_loss_in_pipeline_split": True}
    moe = {"dispatcher": row.dispatcher, "overlap": row.overlap == "true",
           "router_fusion": True, "aux_loss": True, "fused_mlp": row.fused_mlp == "true"}
    if row.dispatcher == "hybridep":
        moe["hybridep_sms"] = int(row.hybridep_sms)
    modules = str(row.recompute_modules).split() if pd.notna(row.recompute_modules) else []
    recompute = {"recompute": "full"} if modules == ["full"] else recompute_workload(modules)
    graphs = str(row.cuda_graphs).split() if pd.notna(row.cuda_graphs) else []
    offload = offload_keys(row.offload)
    return row_runner.training_scenario(
        row, mtp=model.mtp_layers, micro_batch=int(row.micro_batch),
        fp8={"recipe": FP8_RECIPE.get(row_runner.label(row))},
        recompute=recompute, parallel=parallel, moe=moe,
        cuda_graphs=graphs, fidelity=fidelity, **({"offload": offload} if offload else {}))


def run(predict, fidelity: str = "analytical", frame: pd.DataFrame | None = None,
        scenario=scenario_for) -> pd.DataFrame:
    """Every row of ``frame`` (default: this CSV's): predicted tokens/s per GPU, or why
    skipped (row_runner.run_rows), each predicted row's scenario built by ``scenario``."""
    return row_runner.run_rows(rows() if frame is None else frame, skip_reason, scenario,
                               predict, fidelity, validate_eager_moe.plan_text,
                               lambda row: round(validate_eager_moe.published(row), 1))


summary = row_runner.summary


def summary_line(s: dict) -> str:
    return row_runner.summary_line("Megatron-LM recipes", s, CSV)

