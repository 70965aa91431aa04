"""FP8 validation: BF16/FP8 pairs and recipes on H100, B200 and GB200
(calibration/reference/modern/fp8_precision_training.csv): NVIDIA DGX Cloud benchmarking
(Llama 3.1 8B, BF16 and FP8 step times), Megatron-Bridge's performance summaries (FP8
current scaling, MXFP8, NVFP4; tokens/s per GPU), TorchTitan's Float8 and async-TP tables
(Grand Teton H100 at 500 W) and its Llama 3 8B Float8 table on 700 W H200s.

Recipes by source: DGX Cloud 24.09/25.02 FP8 = TE delayed scaling; Megatron-Bridge FP8
(labelled FP8-CS from 25.11) = current (tensorwise) scaling, MXFP8 and NVFP4 as named;
TorchTitan float8 = torchao tensorwise. Rows the simulator cannot reproduce are kept with
their reason: GB300 (not in the catalog), LoRA fine-tuning, torchao rowwise scaling,
eager-mode (no torch.compile) runs. Where a source is silent: micro batch 1, no
activation recompute (Megatron-Bridge), sequence 8192 (TorchTitan's Llama 3 default).

Besides each row's error, ``pairs`` compares the FP8/BF16 speed-up of runs that differ
only in precision: predicted ratio - published ratio, in points.
"""

from __future__ import annotations

import re
from typing import Any

from calibration.moe_recipes import container, release
from calibration.validate_modern import Case, num, read, run, summary, training
from hw_models import catalog

SUITE = "fp8"
SYSTEMS = {"H100": "dgx-h100", "B200": "dgx-b200", "GB200": "gb200-nvl72",
           "B300": "dgx-b300", "GB300": "gb300-nvl72"}
ARCH = {"llama3-8b": "llama3-8b", "llama3-70b": "llama3-70b", "llama3.1-405b": "llama3-405b"}
# TorchTitan's tables: Meta's Grand Teton hosts (H100 96GB HBM2e capped at 500 W) and a
# 700 W H200 cluster running the same Llama 3 8B recipe (Trainy on WhiteFiber).
TITAN_SYSTEMS = {
    "H100": ("grand-teton-h100", "seq 8192 assumed; Grand Teton H100 96GB HBM2e 500W (NVL peaks assumed)"),
    "H200": ("dgx-h200", "seq 8192 (llama3_8b.toml at torchtitan e7c0cae); H200 at 700 W; "
                         "FSDP float8 all-gather not modelled (BF16 gathered)"),
}


def titan_step(source_id: str) -> dict[str, Any]:
    """What a TorchTitan step pays beyond the layers, from its code at the benchmark's
    commit: FSDP2's copy-out and copy-in, GQA's K,V repeated to every head before SDPA
    (``repeat_kv``), DTensor TP's sequence-dim copies (vanilla TP), the Llama's separate
    wq / wk / wv and w1 / w3 linears (``separate_projections``), FSDP2's root group of
    embedding, norm and output layer (``fsdp2_root_group``), RoPE as an eager complex
    multiply (``complex_rope``), PyTorch's linears, not Transformer Engine's modules
    (``te_modules`` off), at every commit; at
    9dec370 (the December 2024
    tables) also the eager fp32 cross-entropy (``output(h).float()``, loss not compiled)
    and the foreach AdamW (``fused`` off by default). From June 2025 (e7c0cae, 820504e)
    the loss is compiled with the model and the optimizer is fused
    (``optimizer.implementation = "fused"``): the simulator's fused loss and Adam."""
    step: dict[str, Any] = {"fsdp2_copies": True, "repeat_kv": True, "dtensor_tp": True,
                            "separate_projections": True, "fsdp2_root_group": True,
                            "complex_rope": True, "te_modules": False}
    if source_id == "TORCHTITAN-H100-202412":
        step |= {"torch_cross_entropy": True, "adam": "foreach"}
    return step


def titan_pp_fsdp(sc: dict[str, Any]) -> dict[str, Any]:
    """FSDP2 under TorchTitan's pipeline (PyTorch 1963fc8 of 2024-12-23, the December 2024
    tables' build; ``apply_fsdp`` with ``reshard_after_forward=False`` when PP is on, FSDP
    as ZeRO-1 here). ``torch.distributed.pipelining``'s stage runs every microbatch's
    backward with ``set_requires_gradient_sync(False)`` and calls FSDP's ``post_backward``
    by hand once the last one is done (``backward_maybe_with_nosync``: the hooks "manually
    disabled before invoking either type of backward, and then ... manually triggered",
    PyTorch PR 144535, from PR 134052). Three costs follow:

    * each microbatch's gradients are accumulated unsharded in the reduce dtype (fp32,
      TorchTitan's ``mixed_precision_reduce``): FSDP2's ``post_backward`` per layer group,
      ``to_accumulated_grad_if_needed`` / ``accumulate_unsharded_grad_if_needed`` in
      ``_fsdp_param.py`` (``unsharded_accumulated_grad += unsharded_param.grad``: read 4
      and 2, write 4 bytes a parameter), on the compute stream: the simulator's unfused
      gradient accumulation (``grad_accumulation_fusion: false``);
    * a stage's reduce-scatters start after its last microbatch's whole backward, not
      layer by layer under it (``overlap_grad_reduce: false``); with 2 stages per rank
      (interleaved) the later stage's run under the earlier one's last backwards
      (``grad_reduce_per_stage``: the post_backward is per stage);
    * ``post_backward`` reshards the parameters (FSDP2's ``reshard_after_backward``), so
      the next step's first forward gathers them again, layer by layer under its compute
      (FSDP2's forward prefetch): ``overlap_param_gather``.
    Not settled by the sources here: whether that build already kept the weights gathered
    between microbatches (``set_reshard_after_backward(False)`` on the other backwards, in
    the stage's code of January 2025); if not, each microbatch's forward gathers them
    again under its compute, which is not charged. Rows without PP keep FSDP2's per-layer
    hooks (zero 3)."""
    w = sc["workload"]
    if w["parallel"].get("pp", 1) > 1:
        w |= {"grad_accumulation_fusion": False, "overlap_grad_reduce": False,
              "grad_reduce_per_stage": True, "overlap_param_gather": True}
    return sc


def titan_float8_tp(sc: dict[str, Any]) -> dict[str, Any]:
    """TorchTitan with Float8 (tensorwise) and TP applies torchao's Float8 TP plan
    (``apply_tp``: Float8ColwiseParallel, Float8RowwiseParallel,
    PrepareFloat8ModuleInput): the TP all-gathers move FP8."""
    w = sc["workload"]
    if w.get("fp8") and w["parallel"].get("tp", 1) > 1:
        w["fp8"]["tp_all_gather"] = True
    return sc


# Megatron-Bridge's Llama 3 / 3.1 performance recipes turn TransformerEngine's userbuffers
# TP overlap off for NVFP4 in every release of the table (scripts/performance/configs/
# llama/llama3_llm_pretrain.py and llama31_llm_pretrain.py at v0.3.0, v0.4.0, v0.5.0:
# ``cfg.comm_overlap.tp_comm_overlap = False if precision == "nvfp4" else ...``; v0.6.0
# src/megatron/bridge/perf_recipes/llama/{gb200,gb300}/llama3.py, llama31.py ``*_nvfp4_config``:
# ``cfg.comm_overlap.tp_comm_overlap = False``): the sequence-parallel all-gathers and
# reduce-scatters run as plain NCCL collectives beside their GEMMs, not pipelined with them.
NVFP4_TP_COMM_OVERLAP = "none"
# Transformer Engine quantizes NVFP4's row-wise and Hadamard-transformed column-wise copies
# in one kernel from 2.14 (workloads/fp8.py ``nvfp4_bytes``); each release's TE from
# calibration/moe_recipes.py CONTAINERS (26.02: TE 2.12, 26.04: 2.14, 26.06: 2.16).
FUSED_RHT_CAST_TE = (2, 14)


def _gpu(text: str) -> str:
    return str(text).split(" ")[0]


def _dgxc(r) -> Case:
    gpus, prec = int(r.num_gpus), str(r.precision).lower()
    sc = training(f"fp8-{r.Index}", "dgx-h100", gpus, "llama3-8b", 8192, int(r.global_batch_seqs),
                  {"tp": 1, "pp": 1, "cp": 2}, precision=prec, recipe="delayed")
    return Case(SUITE, f"{r.source_id} Llama 3.1 8B {gpus} H100 {r.precision}", "step_time_s",
                num(r.step_time_s), sc, "TE delayed scaling; no recompute (not published)",
                pair=f"{r.source_id}-{gpus}", extra={"gpu": "H100", "precision": prec})


def _recipe(precision: str) -> tuple[str, str]:
    p = precision.upper()
    if p.startswith("MXFP8"):
        return "fp8", "mxfp8"
    if p.startswith("NVFP4"):
        return "fp8", "nvfp4"
    return "fp8", "tensorwise"


def _mb_perf(r) -> Case:
    gpu = _gpu(r.gpu_type)
    name = f"{r.source_id} {r.model} {int(r.num_gpus)} {gpu} {r.precision.split(' ')[0]}"
    published = num(r.throughput_tokens_per_s_per_gpu)
    extra = {"gpu": gpu, "precision": str(r.precision).split(" ")[0].lower()}
    if gpu not in SYSTEMS:
        return Case(SUITE, name, "tokens_per_s_per_gpu", published, skip=f"{gpu} is not in the catalog",
                    extra=extra)
    if "LoRA" in r.model:
        return Case(SUITE, name, "tokens_per_s_per_gpu", published,
                    skip="LoRA fine-tuning is not modelled", extra=extra)
    prec, recipe = _recipe(str(r.precision))
    tp, pp, cp = int(num(r.tp)), int(num(r.pp)), int(num(r.cp))
    vpp = int(num(r.vpp) or 1)
    fsdp = int(num(r.fsdp) or 0)
    par: dict[str, Any] = {"tp": tp, "pp": pp, "cp": cp, "vpp": vpp, "zero": 3 if fsdp else 1}
    if recipe == "nvfp4" and tp > 1:
        par["tp_comm_overlap"] = NVFP4_TP_COMM_OVERLAP
    layers = {"llama3.1-405b": 126, "llama3-70b": 80, "llama3-8b": 32}[r.arch_id]
    if layers % (pp * vpp):        # Megatron-Bridge's 405B recipes count embedding and loss
        par |= {"account_for_embedding_in_pipeline_split": True,
                "account_for_loss_in_pipeline_split": True}
    sc = training(f"fp8-{r.Index}", SYSTEMS[gpu], int(r.num_gpus), ARCH[r.arch_id], int(r.seq_len),
                  int(num(r.global_batch_seqs)), par, precision=prec, recipe=recipe,
                  micro_batch=int(num(r.micro_batch) or 1))
    if recipe == "nvfp4" and container(release(r))[0] < FUSED_RHT_CAST_TE:
        sc["workload"]["fp8"]["fused_rht_cast"] = False
    profile = catalog.gpu(catalog.system(SYSTEMS[gpu]).gpu).profile
    note = f"{recipe}; no recompute (not published)" + (
        "; no TP overlap (recipe)" if recipe == "nvfp4" and tp > 1 else "") + (
        f"; efficiency profile {profile}" if gpu != "H100" else "")
    return Case(SUITE, name, "tokens_per_s_per_gpu", published, sc, note, extra=extra)


def _titan(r) -> Case:
    text = f"{r.precision} {r.other_settings}"
    gpus = int(r.num_gpus)
    fsdp = int(num(r.fsdp))
    tp = int(num(r.tp) or 1)
    asyn = "Async TP" in text or "AsyncTP" in text
    mode = "async" if asyn else "vanilla"
    prec = "fp8" if ("float8" in text.lower()) else "bf16"
    local = int(re.search(r"local batch(?: size)? (\d+)", text).group(1))
    gpu = _gpu(r.gpu_type)
    name = f"TorchTitan {r.model} {gpus} {gpu} {str(r.precision).split(' (')[0]} {mode}" + (
        "" if "compile" in text else " eager")
    published = num(str(r.throughput_tokens_per_s_per_gpu).split(" ")[0])
    extra = {"gpu": gpu, "precision": prec}
    if "rowwise" in text:
        return Case(SUITE, name, "tokens_per_s_per_gpu", published,
                    skip="torchao rowwise scaling is not one of the modelled recipes", extra=extra)
    if "compile" not in text:
        return Case(SUITE, name, "tokens_per_s_per_gpu", published,
                    skip="eager mode (no torch.compile): unfused kernels are not modelled", extra=extra)
    # selective AC in TorchTitan is its per-op policy (selective_ac_option "op", its default)
    rc = "full" if "full" in str(r.recompute) else "selective_op"
    par = {"tp": tp, "zero": 3}
    if tp > 1:
        par["tp_comm_overlap"] = "async" if asyn else "none"
    system, note = TITAN_SYSTEMS[gpu]
    seq = int(num(r.seq_len) or 8192)
    sc = training(f"fp8-titan-{r.Index}", system, gpus, ARCH[r.arch_id], seq, fsdp * local,
                  par, precision=prec, recipe="tensorwise", micro_batch=local, recompute=rc,
                  fused_amax=True, **titan_step(r.source_id))
    titan_float8_tp(sc)
    return Case(SUITE, name, "tokens_per_s_per_gpu", published, sc, note,
                pair=f"{r.source_id}-{r.model}-{gpus}-{mode}", extra=extra)


def cases() -> list[Case]:
    out = []
    for r in read("fp8_precision_training.csv").itertuples():
        if r.source_id.startswith("DGXC"):
            out.append(_dgxc(r))
        elif r.source_id.startswith("MB-PERF"):
            out.append(_mb_perf(r))
        else:
            out.append(_titan(r))
    return out


def rows(band: bool = False) -> list[dict[str, Any]]:
    result = run(cases(), band)
    for c, row in zip(cases(), result, strict=True):
        row["pair"] = c.pair
    return result


def pairs(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """FP8/BF16 speed-up, predicted and published, of rows paired by configuration."""
    by: dict[str, dict[str, dict]] = {}
    for r in result:
        if r.get("pair") and r["status"] == "ok":
            by.setdefault(r["pair"], {})[r["precision"]] = r
    out = []
    for key, p in by.items():
        if {"bf16", "fp8"} <= p.keys():
            b, f = p["bf16"], p["fp8"]
            faster = (lambda x, y: x / y) if b["metric"] == "step_time_s" else (lambda x, y: y / x)
            pub, pred = faster(b["published"], f["published"]), faster(b["predicted"], f["predicted"])
            out.append({"suite": SUITE, "name": f"speed-up {key}", "predicted": round(pred, 3),
                        "published": round(pub, 3), "points": round((pred - pub) * 100, 1)})
    return out


def summarize(result: list[dict[str, Any]]) -> dict[str, Any]:
    s = summary(result)
    s["h100"] = summary(result, lambda r: r.get("gpu") == "H100")
    pr = pairs(result)
    s["pairs"] = len(pr)
    s["max_ratio_points"] = max((abs(p["points"]) for p in pr), default=None)
    return s


def dashboard_rows() -> list[dict[str, Any]]:
    from calibration.validate_modern import dashboard
    return dashboard(rows())
