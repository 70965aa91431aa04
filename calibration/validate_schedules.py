"""Pipeline schedule validation on measured runs (calibration/reference/modern/
pipeline_schedules.csv): TorchTitan's Llama 3.1 405B on 512 H100 with 1F1B and with
interleaved 1F1B (Table 5, tokens/s per GPU), and their ratio. The analytic rows of the
same file (DualPipe's and zero-bubble's bubble and memory formulas) are tests
(tests/workloads/test_sched_pipeline.py); DeepSeek-V3's DualPipe row and the zero-bubble
paper's "up to 23-31%" publish no configuration that can be replayed and are skipped.

Where TorchTitan is silent: sequence 8192 (its Llama 3 default), microbatch 1 (32
microbatches of the local batch 32), 2 virtual stages per rank for the interleaved run,
126 layers split with embedding and loss counted as layers, FSDP over the 8 data-parallel
ranks as ZeRO-1 (weights kept between microbatches), full activation checkpointing,
torchao tensorwise Float8 (amax fused by torch.compile), async TP; its H100s are 96 GB
HBM2e at 500 W: the catalog's ``grand-teton-h100`` (docs/long_context.md).
"""

from __future__ import annotations

from typing import Any

from calibration.validate_modern import Case, num, read, run, summary, training

SUITE = "schedules"


def _titan(r) -> Case:
    interleaved = str(r.pipeline_schedule).startswith("Interleaved")
    par: dict[str, Any] = {"tp": 8, "pp": 8, "vpp": 2 if interleaved else 1,
                           "tp_comm_overlap": "async",
                           "account_for_embedding_in_pipeline_split": True,
                           "account_for_loss_in_pipeline_split": True}
    sc = training(f"sched-{r.Index}", "grand-teton-h100", int(r.num_gpus), "llama3-405b", 8192,
                  int(r.global_batch_seqs), par, precision="fp8", recipe="tensorwise",
                  fused_amax=True, recompute="full")
    return Case(SUITE, f"TorchTitan Llama 3.1 405B 512 H100 {r.pipeline_schedule}",
                "tokens_per_s_per_gpu", num(r.throughput_tokens_per_s_per_gpu), sc,
                "seq 8192, mb 1, vpp 2 assumed; Grand Teton H100 96GB 500W (NVL peaks assumed)")


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
