"""Pipeline schedule validation on measured runs (calibration/reference/modern/
pipeline_schedules.csv): TorchTitan's Llama 3.1 405B on 512 H100 with 1F1B and with
interleaved 1F1B (Table 5, tokens/s per GPU), and their ratio. The analytic rows of the
same file (DualPipe's and zero-bubble's bubble and memory formulas) are tests
(tests/workloads/test_sched_pipeline.py); DeepSeek-V3's DualPipe row and the zero-bubble
paper's "up to 23-31%" publish no configuration that can be replayed and are skipped.

From TorchTitan's code at the benchmark's commit (9dec370, train_configs/llama3_405b.toml,
parallelisms/pipeline_llama.py and pipelining_utils.py): sequence 8192; the local batch of
32 split in ``pipeline_parallel_microbatches`` microbatches, whose default is the pipeline
degree: 8 microbatches of 4 sequences; 2 stages per rank for the interleaved (multi-stage)
schedule; ``generate_split_points`` gives the 126 layers as 15, 16 x 6, 15 (8 stages) and
7, 8 x 14, 7 (16 stages), the same split as counting embedding and loss as one layer
each; FSDP with ``reshard_after_forward=False`` under PP (weights kept between
microbatches: ZeRO-1 here) as PyTorch's pipelining stage drives it (``titan_pp_fsdp``:
fp32 gradient accumulation per microbatch, reduce-scatters after each stage's last
backward, the gather under the next forward); full activation checkpointing, torchao tensorwise Float8
(amax fused by torch.compile), async TP. Its H100s are 96 GB HBM2e at 500 W: the
catalog's ``grand-teton-h100`` (docs/long_context.md).
"""

from __future__ import annotations

from typing import Any

from calibration.validate_fp8 import titan_float8_tp, titan_pp_fsdp, titan_step
from calibration.validate_modern import Case, num, read, run, summary, training

SUITE = "schedules"
PP = 8


def _titan(r) -> Case:
    interleaved = str(r.pipeline_schedule).startswith("Interleaved")
    par: dict[str, Any] = {"tp": 8, "pp": PP, "vpp": 2 if interleaved else 1,
                           "tp_comm_overlap": "async",
                           "account_for_embedding_in_pipeline_split": True,
                           "account_for_loss_in_pipeline_split": True}
    gbs = int(r.global_batch_seqs)
    local = gbs // int(r.fsdp)
    # TorchTitan: pipeline_parallel_microbatches defaults to the pipeline degree.
    micro = local // PP
    sc = training(f"sched-{r.Index}", "grand-teton-h100", int(r.num_gpus), "llama3-405b", 8192,
                  gbs, par, precision="fp8", recipe="tensorwise", micro_batch=micro,
                  fused_amax=True, recompute="full", **titan_step(r.source_id))
    titan_float8_tp(sc)
    titan_pp_fsdp(sc)
    return Case(SUITE, f"TorchTitan Llama 3.1 405B 512 H100 {r.pipeline_schedule}",
                "tokens_per_s_per_gpu", num(r.throughput_tokens_per_s_per_gpu), sc,
                f"seq 8192, {PP} microbatches of {micro} (TorchTitan's default: the PP degree); "
                "Grand Teton H100 96GB 500W (NVL peaks assumed)")


def cases() -> list[Case]:
    out = []
    for r in read("pipeline_schedules.csv").itertuples():
        if r.source_id.startswith("TORCHTITAN"):
            out.append(_titan(r))
        elif str(r.notes).startswith("MEASURED"):
            out.append(Case(SUITE, f"{r.source_id} {r.model} {r.pipeline_schedule}",
                            "tokens_per_s_per_gpu", None,
                            skip="no replayable configuration or metric published"))
    return out


def rows(band: bool = False) -> list[dict[str, Any]]:
    return run(cases(), band)


def ratio(result: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Interleaved / 1F1B throughput, predicted and published."""
    ok = {("Interleaved" in r["name"]): r for r in result if r["status"] == "ok"}
    if len(ok) < 2:
        return None
    pred = ok[True]["predicted"] / ok[False]["predicted"]
    pub = ok[True]["published"] / ok[False]["published"]
    return {"suite": SUITE, "name": "interleaved / 1F1B", "predicted": round(pred, 3),
            "published": round(pub, 3), "points": round((pred - pub) * 100, 1)}


def summarize(result: list[dict[str, Any]]) -> dict[str, Any]:
    return summary(result) | {"ratio": ratio(result)}


def dashboard_rows() -> list[dict[str, Any]]:
    from calibration.validate_modern import dashboard
    return dashboard(rows())
