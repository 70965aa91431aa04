"""Long-context validation: NeMo's long-sequence runs with context parallelism (Llama 2
7B on H100 to 1M tokens, Llama 3 8B on B200) and TorchTitan's CP sweeps (Llama 3.1 8B
and 405B on H100), from calibration/reference/modern/long_context_cp.csv.

Metric: NeMo rows publish model TFLOP/s per GPU, TorchTitan rows tokens/s per GPU.
Configuration as published; where silent (stated per row):
* NeMo: micro batch 1, FP8 with TE's delayed scaling, no activation recompute, ring CP
  (Megatron-Core's default). The B200 rows list TP*PP*DP*CP = GPUs/4 (and only that DP
  divides their global batch): from 32 GPUs up they run on TP*PP*DP*CP GPUs, the two
  smaller ones take DP from the GPU count. The "without CP" baselines publish no
  configuration and are skipped.
* TorchTitan: CP with KV all-gather (its ``context_parallel_rotate_method`` default,
  PyTorch's ``context_parallel``: block kernels merged in fp32, traced by torch.compile
  with the rest of each block, so its collectives are waited where issued and its merge
  passes fused: ``cp_compiled``, docs/long_context.md),
  K,V repeated to every query head before SDPA (its Llama model's ``repeat_kv``), FSDP
  (zero 3) over the GPUs not used by TP/PP/CP, full activation checkpointing, torchao
  tensorwise Float8, async TP for the 405B, local batch 1 (8B) or 8 (405B, in 8
  microbatches: ``pipeline_parallel_microbatches`` defaults to the PP degree; FSDP2
  under the pipeline as ``titan_pp_fsdp`` in validate_fp8.py), 405B's
  126 layers on 8 stages as ``generate_split_points`` cuts them (15, 16 x 6, 15: the
  split with embedding and loss counted as layers); its H100s are 96 GB HBM2e at 500 W: the catalog's
  ``grand-teton-h100`` (peaks at the lower end of the published range, stated in every
  row); the tensorwise amax fused into the producing kernels by torch.compile.
"""

from __future__ import annotations

from typing import Any

from calibration.validate_fp8 import titan_float8_tp, titan_pp_fsdp, titan_step
from calibration.validate_modern import Case, num, read, run, summary, training

SUITE = "long-context"
SYSTEM = {"H100": "dgx-h100", "B200": "dgx-b200"}
MODEL = {"llama2-7b": "llama2-7b", "llama3-8b": "llama3-8b", "llama3.1-405b": "llama3-405b"}


def _nemo(r) -> Case:
    name = f"NeMo {r.model} {r.gpu_type} {int(r.num_gpus)} GPUs seq {int(r.seq_len) // 1024}K"
    with_cp = str(r.notes).startswith("WITH CP")
    published = num(r.model_tflops_per_gpu)
    if not with_cp:
        return Case(SUITE, name + " (no CP)", "tflops_per_gpu", published,
                    skip="configuration of the best no-CP run is not published")
    tp, pp, cp = int(r.tp), int(r.pp), int(r.cp)
    note = "FP8 delayed, mb 1, no recompute (not published)"
    gpus = int(r.num_gpus)
    if r.gpu_type == "B200":
        sized = tp * pp * cp * int(r.dp)
        if sized >= 32:
            gpus = sized
            note += f"; run on TP*PP*DP*CP = {sized} GPUs (published: {int(r.num_gpus)})"
        else:
            note += f"; DP from the GPU count (published DP {int(r.dp)} gives GPUs/4)"
    sc = training(f"lc-{r.Index}", SYSTEM[r.gpu_type], gpus, MODEL[r.arch_id], int(r.seq_len),
                  int(r.global_batch_seqs), {"tp": tp, "pp": pp, "cp": cp},
                  precision="fp8", recipe="delayed")
    return Case(SUITE, name + f" TP{tp} PP{pp} CP{cp}", "tflops_per_gpu", published, sc, note)


def _titan(r) -> Case:
    cp = int(r.cp)
    fsdp = int(r.fsdp)
    tp = int(r.tp) if num(r.tp) else 1
    pp = int(r.pp) if num(r.pp) else 1
    local = 8 if pp > 1 else 1
    name = f"TorchTitan {r.model} {int(r.num_gpus)} GPUs seq {int(r.seq_len) // 1024}K CP{cp}"
    # TorchTitan's context_parallel_rotate_method defaults to "allgather" (KV all-gathered);
    # its blocks are compiled with the attention inside, so the CP loop is traced.
    par: dict[str, Any] = {"tp": tp, "pp": pp, "cp": cp, "zero": 3 if pp == 1 else 1,
                           "cp_kind": "allgather", "cp_compiled": True}
    if tp > 1:
        par["tp_comm_overlap"] = "async"
    if pp > 1:        # 126 layers on 8 stages: embedding and loss counted as layers (assumed)
        par |= {"account_for_embedding_in_pipeline_split": True,
                "account_for_loss_in_pipeline_split": True}
    sc = training(f"lc-titan-{r.Index}", "grand-teton-h100", int(r.num_gpus), MODEL[r.arch_id],
                  int(r.seq_len), fsdp * local, par, precision="fp8", recipe="tensorwise",
                  fused_amax=True, recompute="full", **titan_step(r.source_id))
    titan_float8_tp(sc)
    titan_pp_fsdp(sc)
    note = ("Grand Teton H100 96GB HBM2e 500W (NVL peaks assumed); FSDP as zero " +
            ("3" if pp == 1 else "1 (PP with FSDP: weights kept between microbatches)"))
    return Case(SUITE, name, "tokens_per_s_per_gpu", num(r.throughput_tokens_per_s_per_gpu), sc, note)


def cases() -> list[Case]:
    df = read("long_context_cp.csv")
    return [(_nemo if r.source_id == "NEMO-LONGSEQ" else _titan)(r) for r in df.itertuples()]


def rows(band: bool = False) -> list[dict[str, Any]]:
    return run(cases(), band)


def summarize(result: list[dict[str, Any]]) -> dict[str, Any]:
    return summary(result)


def dashboard_rows() -> list[dict[str, Any]]:
    from calibration.validate_modern import dashboard
    return dashboard(rows())
