"""The validation reports ``clustersim validate ...`` prints: each returns the data (for
``--format json``) and the table of predicted vs published with the error of every row,
bad rows included, and the summary line."""

from __future__ import annotations

from typing import Any

import pandas as pd

Report = tuple[dict[str, Any], str]


def _table(df: pd.DataFrame, s: dict[str, Any], tail: str, blank_na: bool = False) -> Report:
    """The rows, their summary ``s``, and the table with the median / max |error| line
    (``tail`` after it, formatted with the summary)."""
    text = (df.astype(object).fillna("") if blank_na else df).to_string(index=False) + (
        f"\n\nmedian |error| {s['median_abs_error_pct']:.1f}%   max |error| "
        f"{s['max_abs_error_pct']:.1f}%" + tail.format(**s))
    return {"rows": df.to_dict("records"), "summary": s}, text


def megatron_sc21(fidelity: str = "analytical") -> Report:
    """Megatron-LM SC'21 Tables 1 and 2 (PTD-P): TFLOP/s per GPU."""
    from calibration.validate_megatron import run, summary
    df = run(fidelity)
    return _table(df, summary(df), "   rows over 20%: {rows_over_20pct} of {rows}", blank_na=True)


def megatron_h100(band: bool = False) -> Report:
    """Megatron-LM's H100 weak-scaling table (GPT 1.7B-462B, 48-6144 GPUs): TFLOP/s per GPU."""
    from calibration.validate_megatron import summary
    from calibration.validate_megatron_h100 import run
    df = run(band)
    return _table(df, summary(df), "   rows over 20%: {rows_over_20pct} of {rows}", blank_na=True)


def trtllm() -> Report:
    """TensorRT-LLM first-token latency at batch 1 (H100 FP8, A100 FP16): ms."""
    from calibration.validate_inference import run, summary
    df = run()
    return _table(df, summary(df), "   rows over 15%: {rows_over_15pct} of {rows}")


def korthikanti() -> Report:
    """Korthikanti et al. Table 4: one 22B layer's forward/backward time, TP=8 on DGX A100."""
    from calibration.validate_korthikanti import run, summary
    df = run()
    return _table(df, summary(df), " (forward, backward and combined of {rows} rows)")


def nccl() -> Report:
    """Predicted vs measured nccl-tests busbw per size, geomean |error| per sweep."""
    from calibration import fit_p2p
    from calibration.validate_nccl import summary, validate
    rows = pd.concat([validate(),
                      fit_p2p.validate().assign(op="sendrecv", fitted=True)],
                     ignore_index=True)
    summ = summary(rows)
    text = rows.to_string(index=False) + "\n\n" + summ.to_string(index=False)
    return {"rows": rows, "summary": summ}, text


def _modern(rows: list[dict[str, Any]], s: dict[str, Any], extra: str = "") -> str:
    from calibration.validate_modern import table
    med, mx = s["median_abs_error_pct"], s["max_abs_error_pct"]
    return table(rows) + (
        f"\n\n{s['compared']} rows compared, {s['skipped']} skipped, {s['errors']} errors; "
        f"median |error| {'-' if med is None else f'{med:.1f}%'}   max |error| "
        f"{'-' if mx is None else f'{mx:.1f}%'}   rows over 10%: {s['rows_over_10pct']}") + extra


def long_context(band: bool = False) -> Report:
    """NeMo long-sequence runs with context parallelism and TorchTitan CP sweeps."""
    from calibration.validate_long_context import rows, summarize
    result = rows(band)
    s = summarize(result)
    return {"rows": result, "summary": s}, _modern(result, s)


def fp8(band: bool = False) -> Report:
    """BF16/FP8 pairs and FP8/MXFP8/NVFP4 recipes on H100, B200, GB200."""
    from calibration.validate_fp8 import pairs, rows, summarize
    result = rows(band)
    s = summarize(result)
    pr = pairs(result)
    h = s["h100"]
    extra = (f"\nH100 rows: {h['compared']} compared, median |error| "
             f"{h['median_abs_error_pct']:.1f}%\n\nFP8/BF16 speed-up (points = predicted - "
             f"published):\n" + pd.DataFrame(pr).drop(columns="suite").to_string(index=False))
    return {"rows": result, "pairs": pr, "summary": s}, _modern(result, s, extra)


def schedules(band: bool = False) -> Report:
    """TorchTitan's 405B with 1F1B and interleaved 1F1B (the analytic rows are tests)."""
    from calibration.validate_schedules import rows, summarize
    result = rows(band)
    s = summarize(result)
    r = s["ratio"]
    extra = "" if r is None else (f"\ninterleaved / 1F1B throughput: predicted {r['predicted']}, "
                                  f"published {r['published']} ({r['points']:+.1f} points)")
    return {"rows": result, "summary": s}, _modern(result, s, extra)


def dense(band: bool = False) -> Report:
    """Megatron-LM's Llama 3 FP8 table and AutoModel FSDP2 (weak scaling: megatron-h100)."""
    from calibration.validate_dense import rows, summarize
    result = rows(band)
    s = summarize(result)
    return {"rows": result, "summary": s}, _modern(result, s)


def dashboard(only: list[str] | None = None) -> Report:
    """Every validation suite in one table (calibration/dashboard.py): rows with predicted,
    published, error and band coverage; median, p90, worst and coverage per suite."""
    from calibration import dashboard as dash
    result = dash.run(only=only)
    return result, dash.markdown(result)


def replay() -> Report:
    """Model-only replay of the real GPU traces (calibration/validate_replay.py)."""
    from calibration.validate_replay import run
    df = run()
    return {"rows": df.to_dict("records")}, df.to_string(index=False, na_rep="")


def moe(fidelity: str = "analytical") -> Report:
    """MoE training (NVIDIA's Megatron/NeMo runs) and serving (SGLang) rows."""
    from calibration.validate_moe import report
    return report(fidelity)


def rl() -> Report:
    """RL post-training step times (NeMo RL, OpenRLHF): every row, skipped ones with reasons."""
    from calibration import validate_rl_split as split
    from calibration.validate_rl import records, run, summary, table
    df, parts = run(), split.run()
    text = table(df) + "\n\nphase split (NeMo RL v0.3 step breakdown):\n" + split.table(parts)
    return {"rows": records(df), "summary": summary(df) | split.summary(parts),
            "split_rows": parts.to_dict("records")}, text
