"""Serving metrics (JSON contract of the inference issue) from finished requests.

TTFT = first token - arrival; TBT = every gap between consecutive tokens of a request
(pooled); TPOT = (e2e - TTFT) / (output - 1) per request; e2e = finish - arrival.
Throughput counts output tokens over the makespan (first arrival to last finish);
goodput counts requests meeting both SLOs (DistServe's definition).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from workloads.inference.requests import Request

if TYPE_CHECKING:
    import pandas as pd


def stats_ms(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "mean": 0.0}
    p50, p90, p99 = np.percentile(x, [50, 90, 99]) * 1e3
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(x.mean() * 1e3)}


def request_frame(reqs: list[Request]) -> pd.DataFrame:
    import pandas as pd
    df = pd.DataFrame({
        "id": [r.id for r in reqs], "arrival_s": [r.arrival for r in reqs],
        "prompt_len": [r.prompt for r in reqs], "output_len": [r.output for r in reqs],
        "replica": [r.replica for r in reqs], "decode_replica": [r.decode_replica for r in reqs],
        "first_token_s": [r.first_token for r in reqs], "finish_s": [r.finish for r in reqs],
        "max_tbt_s": [max(r.tbt, default=0.0) for r in reqs],
        "preemptions": [r.preemptions for r in reqs]})
    df["ttft_s"] = df.first_token_s - df.arrival_s
    df["e2e_s"] = df.finish_s - df.arrival_s
    steps = (df.output_len - 1).clip(lower=1)
    df["tpot_s"] = np.where(df.output_len > 1, (df.e2e_s - df.ttft_s) / steps, 0.0)
    return df


def summarize(reqs: list[Request], df: pd.DataFrame, ttft_slo_ms: float,
              tpot_slo_ms: float) -> dict[str, object]:
    # Every token gap, request by request (one C-level conversion per request's list).
    tbt = np.concatenate([np.asarray(r.tbt, float) for r in reqs] or [np.empty(0)])
    start, end = float(df.arrival_s.min()), float(df.finish_s.max())
    span = max(end - start, 1e-12)
    ok = (df.ttft_s * 1e3 <= ttft_slo_ms) & (df.tpot_s * 1e3 <= tpot_slo_ms)
    return {
        "ttft_ms": stats_ms(df.ttft_s.to_numpy()), "tbt_ms": stats_ms(tbt),
        "tpot_ms": stats_ms(df.tpot_s[df.output_len > 1].to_numpy()),
        "e2e_ms": stats_ms(df.e2e_s.to_numpy()),
        "throughput_tokens_per_s": float(df.output_len.sum() / span),
        "requests_per_s": float(len(df) / span), "slo_attainment": float(ok.mean()),
        "goodput_requests_per_s": float(ok.sum() / span), "makespan_s": span,
    }
