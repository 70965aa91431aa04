"""TensorRT-LLM first-token latency at batch 1 (v0.5 performance table): predicted vs
published for every row. H100 rows run FP8, A100 rows FP16, on DGX systems with the
table's TP. Nothing here is fitted to the table: the compute model and profiles are the
global microbenchmark fits of calibration/build_profiles.py.

    python -m calibration.validate_inference
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from sim.progress import progress
from sim.scenario import Scenario
from sim.simulate_inference import first_token_latency

CSV = "reference/inference/trtllm_first_token_latency.csv"
# Table name -> model preset (workloads/data/models.yaml). TRT-LLM v0.5's LLaMA-70B
# benchmark is Llama 2 70B (GQA, 8 KV heads).
MODELS = {"GPT-J-6B": "gptj-6b", "LLaMA-7B": "llama-7b", "LLaMA-70B": "llama2-70b",
          "Falcon-180B": "falcon-180b"}
SETUPS = {"h100_fp8": ("dgx-h100", "fp8"), "a100_fp16": ("dgx-a100", "fp16")}


def load() -> pd.DataFrame:
    text = resources.files("calibration").joinpath(CSV)
    return pd.read_csv(text, comment="#")


def predict(model: str, tp: int, system: str, precision: str, isl: int) -> float:
    sc = Scenario(name=f"{model}-{system}", cluster={"system": system, "nodes": 1},
                  workload={"kind": "inference", "model": model, "precision": precision,
                            "parallel": {"tp": tp}, "replicas": 1})
    return first_token_latency(sc, isl) * 1e3


def run() -> pd.DataFrame:
    rows = []
    table = load()
    for r in progress(table.itertuples(), total=len(table), desc="trtllm", unit="model"):
        for key, (system, precision) in SETUPS.items():
            for isl in (128, 2048):
                measured = float(getattr(r, f"{key}_isl{isl}"))
                pred = predict(MODELS[r.model], int(r.tp), system, precision, isl)
                rows.append({"model": r.model, "tp": int(r.tp), "gpu": key.split("_")[0],
                             "precision": precision, "isl": isl, "measured_ms": measured,
                             "predicted_ms": round(pred, 2),
                             "error_pct": round(100 * (pred - measured) / measured, 1)})
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> dict[str, float]:
    err = df.error_pct.abs()
    return {"rows": len(df), "median_abs_error_pct": float(err.median()),
            "max_abs_error_pct": float(err.max()), "rows_over_15pct": int((err > 15).sum())}


if __name__ == "__main__":
    out = run()
    print(out.to_string(index=False))
    s = summary(out)
    print(f"\nmedian |error| {s['median_abs_error_pct']:.1f}%  max {s['max_abs_error_pct']:.1f}%  "
          f"rows over 15%: {s['rows_over_15pct']} of {s['rows']}")
