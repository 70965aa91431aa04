"""Dense training on H100 (calibration/reference/modern/dense_training_reference.csv):
Megatron-LM's weak-scaling table (GPT 1.7B to 462B on 48 to 6144 H100, model TFLOP/s
per GPU), Megatron-LM's Llama 3 FP8 table (tokens/s per GPU) and NeMo AutoModel's FSDP2
Llama 3 70B row (step time).

Configuration as published; where silent: the weak-scaling GPT models are Megatron's
GPT (FFN 4h, GELU, LayerNorm, biases, learned positions, tied embeddings) at BF16
(the table's MFU is against the BF16 peak), micro batch 1, no recompute, no interleaving,
distributed optimizer, sequence parallelism, TP overlap and the parameter all-gather
beside the next forward (the README lists --overlap-grad-reduce, --overlap-param-gather,
--tp-comm-overlap). Megatron's FP8 rows:
TE delayed scaling ("hybrid format"). AutoModel: FSDP2 over 32 x CP 2 (zero 3), full
activation checkpointing (assumed).
"""

from __future__ import annotations

from typing import Any

from calibration.validate_modern import Case, num, read, run, summary, training

SUITE = "dense"
ARCH = {"llama3-8b": "llama3-8b", "llama3-70b": "llama3-70b", "llama3.1-405b": "llama3-405b"}


def _gpt(r) -> dict[str, Any]:
    other = str(r.other_settings)
    heads = int(other.split("attention heads ")[1].split(";")[0])
    hidden = int(other.split("hidden ")[1].split(";")[0])
    return {"layers": int(r.num_layers_run), "hidden": hidden, "heads": heads, "vocab": 131072,
            "seq_len": int(r.seq_len)}


def _weak(r) -> Case:
    tp, pp = int(r.tp), int(r.pp)
    model = _gpt(r)
    name = f"Megatron weak scaling {r.model.split(' (')[0]} {int(r.num_gpus)} H100 TP{tp} PP{pp}"
    par: dict[str, Any] = {"tp": tp, "pp": pp}
    layers = model["layers"]
    if layers % pp:
        return Case(SUITE, name, "tflops_per_gpu", num(r.model_tflops_per_gpu),
                    skip=f"{layers} layers on pp={pp}: the split is not published")
    sc = training(f"dense-{r.Index}", "dgx-h100", int(r.num_gpus), model, int(r.seq_len),
                  int(r.global_batch_seqs), par, overlap_param_gather=True)
    return Case(SUITE, name, "tflops_per_gpu", num(r.model_tflops_per_gpu), sc,
                "bf16, mb 1, no recompute, no vpp (not published)")


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
                  recompute="full")
    return Case(SUITE, f"AutoModel FSDP2 {r.model} {int(r.num_gpus)} H100 CP{int(r.cp)}",
                "step_time_s", num(r.step_time_s), sc, "FSDP2 x CP2, full recompute (assumed)")


def cases() -> list[Case]:
    out = []
    for r in read("dense_training_reference.csv").itertuples():
        if r.source_id == "MLM-README-WEAKSCALING":
            out.append(_weak(r))
        elif r.source_id == "MLM-LLAMA-FP8":
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
