"""The validation reports ``clustersim validate ...`` prints: each returns the data (for
``--format json``) and the table of predicted vs published with the error of every row,
bad rows included, and the summary line."""

from __future__ import annotations

from typing import Any

import pandas as pd

Report = tuple[dict[str, Any], str]


def megatron_sc21(fidelity: str = "analytical") -> Report:
    """Megatron-LM SC'21 Tables 1 and 2 (PTD-P): TFLOP/s per GPU."""
    from calibration.validate_megatron import run, summary
    df = run(fidelity)
    s = summary(df)
    text = df.fillna("").to_string(index=False) + (
        f"\n\nmedian |error| {s['median_abs_error_pct']:.1f}%   max |error| "
        f"{s['max_abs_error_pct']:.1f}%   rows over 20%: {s['rows_over_20pct']} of {s['rows']}")
    return {"rows": df.to_dict("records"), "summary": s}, text


def trtllm() -> Report:
    """TensorRT-LLM first-token latency at batch 1 (H100 FP8, A100 FP16): ms."""
    from calibration.validate_inference import run, summary
    df = run()
    s = summary(df)
    text = df.to_string(index=False) + (
        f"\n\nmedian |error| {s['median_abs_error_pct']:.1f}%   max |error| "
        f"{s['max_abs_error_pct']:.1f}%   rows over 15%: {s['rows_over_15pct']} of {s['rows']}")
    return {"rows": df.to_dict("records"), "summary": s}, text


def korthikanti() -> Report:
    """Korthikanti et al. Table 4: one 22B layer's forward/backward time, TP=8 on DGX A100."""
    from calibration.validate_korthikanti import run, summary
    df = run()
    s = summary(df)
    text = df.to_string(index=False) + (
        f"\n\nmedian |error| {s['median_abs_error_pct']:.1f}%   max |error| "
        f"{s['max_abs_error_pct']:.1f}% (forward, backward and combined of {s['rows']} rows)")
    return {"rows": df.to_dict("records"), "summary": s}, text


def nccl() -> Report:
    """Predicted vs measured nccl-tests busbw per size, geomean |error| per sweep."""
    from calibration import fit_p2p
    from calibration.validate_nccl import summary, validate
    rows = pd.concat([validate().assign(op="all_reduce"),
                      fit_p2p.validate().assign(op="sendrecv", fitted=True)],
                     ignore_index=True)
    summ = summary(rows)
    text = rows.to_string(index=False) + "\n\n" + summ.to_string(index=False)
    return {"rows": rows, "summary": summ}, text


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
    from calibration.validate_rl import records, run, summary, table
    df = run()
    return {"rows": records(df), "summary": summary(df)}, table(df)
