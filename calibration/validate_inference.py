"""TensorRT-LLM first-token latency at batch 1 (v0.5 performance table): predicted vs
published for every row. H100 rows run FP8, A100 rows FP16, on DGX systems with the
table's TP. Nothing here is fitted to the table: the compute model and profiles are the
global microbenchmark fits of calibration/build_profiles.py.

    python -m calibration.validate_inference
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

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


SERVING_H100 = "measured/h100/gpu_serving.json"
# benchmarks/gpu_serving.py runs plain PyTorch operators (13 kernels per rotary call, SwiGLU
# as two), not an engine's fused kernels: its rows are priced with ``kernels: eager``
# (workloads/inference/eager.py). A document may name its implementation under "kernels".
SERVING_KERNELS = "eager"


def predict_serving(path: Path | None = None, profile: str | None = None,
                    kernels: str | None = None) -> list[dict]:
    """Real serving iterations measured on one GPU (benchmarks/gpu_serving.py: Llama 3 8B,
    bf16, eager PyTorch layers in CUDA graphs; batch-1 prefills = first-token latency,
    decode steps = time between tokens) through the serving iteration model on one GPU of
    that kind, with the kernels of the implementation measured (``kernels`` overrides)."""
    from calibration.fit_measured import catalog_gpu_for
    from hw_models import catalog
    from hw_models.compute import ComputeModel
    from hw_models.profile import load
    from sim.serving.iteration import IterationModel
    from workloads.inference.ops import Shape
    from workloads.model import resolve

    path = path or Path(str(resources.files("calibration").joinpath(SERVING_H100)))
    doc = json.loads(path.read_text())
    gpu = catalog.gpu(catalog_gpu_for(doc["device_name"]))
    prof = load(profile or gpu.profile)
    kernels = kernels or doc.get("kernels", SERVING_KERNELS)
    it = IterationModel(resolve(doc["model"]), 1, 1, "bf16", ComputeModel(gpu, prof), network=None,
                        kernels=kernels)
    out = []
    for r in doc["rows"]:
        if r["kind"] == "prefill":
            p = r["tokens"]
            shape = Shape(prefill_tokens=p, prefill_pairs=p * (p + 1) // 2, prefill_kv=p, logits=1)
        else:
            shape = Shape(decode_seqs=r["batch"], decode_kv=r["batch"] * r["context"],
                          logits=r["batch"])
        pred = it.time(shape)
        out.append(r | {"model": doc["model"], "device_name": doc["device_name"],
                        "predicted_s": pred, "error_pct": 100 * (pred / r["time_s"] - 1)})
    return out


SUITE = "inference"


def dashboard_rows() -> list[dict]:
    """Rows for ``clustersim validate all``: TRT-LLM first-token latency at batch 1 (A100,
    H100) and the real H100 serving iterations (first-token latency and time between
    tokens of Llama 3 8B), with the built-in profiles."""
    rows = [{"name": f"TTFT {r.model} TP{r.tp} {r.gpu} {r.precision} isl {r.isl}",
             "predicted": r.predicted_ms, "published": r.measured_ms, "unit": "ms",
             "kind": "time", "group": f"TTFT {r.gpu.upper()}"} for r in run().itertuples()]
    for r in predict_serving():
        metric = "TTFT" if r["kind"] == "prefill" else "TBT"
        what = (f"isl {r['tokens']}" if r["kind"] == "prefill"
                else f"B={r['batch']} ctx={r['context']}")
        rows.append({"name": f"{metric} {r['model']} h100 bf16 {what} (measured)",
                     "predicted": round(r["predicted_s"] * 1e3, 3),
                     "published": round(r["time_s"] * 1e3, 3), "unit": "ms", "kind": "time",
                     "group": f"{metric} H100"})
    return rows


if __name__ == "__main__":
    out = run()
    print(out.to_string(index=False))
    s = summary(out)
    print(f"\nmedian |error| {s['median_abs_error_pct']:.1f}%  max {s['max_abs_error_pct']:.1f}%  "
          f"rows over 15%: {s['rows_over_15pct']} of {s['rows']}")
