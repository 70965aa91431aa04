"""Dense training on H100 (calibration/reference/modern/dense_training_reference.csv):
Megatron-LM's Llama 3 FP8 table (tokens/s per GPU) and NeMo AutoModel's FSDP2 Llama 3
70B row (step time).

The file's Megatron-LM weak-scaling rows (GPT 1.7B to 462B on 48 to 6144 H100) belong to
the ``megatron-h100`` suite (calibration/validate_megatron_h100.py, the same nine rows in
calibration/reference/training/megatron_h100_weak_scaling.csv): each published row is
counted by exactly one suite. Configuration as published; where silent: Megatron's FP8 rows:
TE delayed scaling ("hybrid format"). AutoModel: FSDP2 over 32 x CP 2 (zero 3, with FSDP2's
per-layer copy-out and copy-in: ``fsdp2_copies``), full activation checkpointing (assumed).
"""

from __future__ import annotations

from typing import Any

from calibration.validate_modern import Case, num, read, run, summary, training

SUITE = "dense"
WEAK_SCALING = "MLM-README-WEAKSCALING"
ARCH = {"llama3-8b": "llama3-8b", "llama3-70b": "llama3-70b", "llama3.1-405b": "llama3-405b"}


def _mlm_fp8(r) -> Case:
    tp, pp, cp = int(r.tp), int(r.pp), int(r.cp)
    vpp = int(num(r.vpp) or 1)
    par: dict[str, Any] = {"tp": tp, "pp": pp, "cp": cp, "vpp": vpp}
    if r.arch_id == "llama3.1-405b":      # 126 layers on 8 x 8 virtual stages
        par |= {"account_for_embedding_in_pipeline_split": True,
                "account_for_loss_in_pipeline_split": True}
    sc = training(f"dense-{r.Index}", "dgx-h100", int(r.num_gpus), ARCH[r.arch_id], int(r.seq_len),
                  int(r.global_batch_seqs), par, precision="fp8", recipe="delayed")
    return Case(SUITE, f"Megatron FP8 {r.model} {int(r.num_gpus)} H100", "tokens_per_s_per_gpu",
                num(r.throughput_tokens_per_s_per_gpu), sc, "TE delayed scaling; no recompute (assumed)")


def _automodel(r) -> Case:
    sc = training(f"dense-{r.Index}", "dgx-h100", int(r.num_gpus), ARCH[r.arch_id], int(r.seq_len),
                  int(r.global_batch_seqs), {"tp": 1, "cp": int(r.cp), "zero": 3},
                  recompute="full", fsdp2_copies=True)
    return Case(SUITE, f"AutoModel FSDP2 {r.model} {int(r.num_gpus)} H100 CP{int(r.cp)}",
                "step_time_s", num(r.step_time_s), sc, "FSDP2 x CP2, full recompute (assumed)")


def cases() -> list[Case]:
    out = []
    for r in read("dense_training_reference.csv").itertuples():
        if r.source_id == WEAK_SCALING:      # the megatron-h100 suite's rows
            continue
        if r.source_id == "MLM-LLAMA-FP8":
            out.append(_mlm_fp8(r))
        else:
            out.append(_automodel(r))
    return out


def rows(band: bool = False) -> list[dict[str, Any]]:
    return run(cases(), band)


def summarize(result: list[dict[str, Any]]) -> dict[str, Any]:
    return summary(result)


def dashboard_rows() -> list[dict[str, Any]]:
    from calibration.validate_modern import dashboard
    return dashboard(rows())
