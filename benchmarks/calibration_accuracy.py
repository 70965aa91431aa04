"""Accuracy of the calibration pipeline on real GPU measurements recorded by others.

    python benchmarks/calibration_accuracy.py        # prints JSON tables (docs/calibration.md)

1. Vidur operators (A100, H100): fit the GEMM curve on two models, predict the GEMM
   operators of the other two; median and p90 |error| per operator and GPU, both splits.
2. nccl-tests all_reduce sweeps (every reference sweep: DGX H100, Azure NDm A100 v4,
   echo ND A100 v4 2-16 GPUs): fit the flow model's per-protocol fabric curves
   (calibration/fit_fabric.py, NCCL's own pick per size) on the sweep alone and predict
   it back (geomean |error|); fit on every other size and predict the sizes left out.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from calibration.build_profiles import REF
from calibration.fitting import fit_gemm
from calibration.vidur import cross_model_errors
from hw_models import catalog
from hw_models.compute import ComputeModel, gemm_bytes
from hw_models.profile import GemmCurve, load_builtin

SPLITS = (["Llama-2-7b-hf", "internlm-20b"], ["CodeLlama-34b-Instruct-hf", "Llama-2-70b-hf"])
GPUS = {"a100": "a100-80gb", "h100": "h100-sxm"}


def vidur_ops(prefix: str) -> pd.DataFrame:
    frames = []
    for p in sorted((REF / "vidur/compute").glob(f"{prefix}_*_ops.csv")):
        df = pd.read_csv(p)
        df["model"] = p.name[len(prefix) + 1:-len("_ops.csv")]
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def gemm_predictor(train: pd.DataFrame, gpu_key: str, prefix: str):
    """Fit the profile's GEMM curve (wave term included) on ``train`` rows; return
    (m, n, k) -> seconds through the simulator's own ComputeModel.gemm."""
    gpu, prof = catalog.gpu(gpu_key), load_builtin(prefix)
    fit = fit_gemm(train.m, train.n, train.k, train.time_s, gpu.peak_flops("fp16"), gpu.hbm_bw,
                   prof.memory.bw_eff, 2, n_boot=1, sms=gpu.sms).params
    cm = ComputeModel(gpu, prof.model_copy(update={"gemm": {"fp16": GemmCurve(**fit)}}))

    def predict(m, n, k):
        return cm.gemm(2 * m * n * k, gemm_bytes(m, n, k, 2), "fp16", (m, n, k))
    return predict


def vidur_table() -> pd.DataFrame:
    from calibration.vidur import gemm_rows
    out = []
    for prefix, key in GPUS.items():
        ops = vidur_ops(prefix)
        rows = gemm_rows(ops)
        for train in SPLITS:
            pred = gemm_predictor(rows[rows.model.isin(train)], key, prefix)
            t = cross_model_errors(ops, train, pred)
            t.insert(0, "gpu", prefix)
            t.insert(1, "fitted_on", "+".join(train))
            out.append(t)
    return pd.concat(out, ignore_index=True).round(2)


def nccl_table() -> pd.DataFrame:
    from calibration.fit_fabric import sweep_errors
    from calibration.validate_nccl import reference_sweeps
    rows = []
    for sw in reference_sweeps():
        prof = load_builtin(sw.profile)
        nvl = {k: v for k, v in prof.fabric.items() if k.startswith("nvlink")}
        e = sweep_errors(sw, prof, nvl)
        rows.append({"sweep": sw.name, "system": sw.system, "profile": sw.profile,
                     "sizes": len(sw.data), "same_sweep_geomean_err_pct": 100 * e["same"],
                     "half_sizes_geomean_err_pct": 100 * e["held_out"]})
    return pd.DataFrame(rows).round(1)


def _geo(pred, meas) -> float:
    """Geometric-mean |error|: exp(mean |log(pred/meas)|) - 1, in percent."""
    return float((np.exp(np.mean(np.abs(np.log(pred / meas)))) - 1) * 100)


def main() -> None:
    print(json.dumps({"vidur_gemm_cross_model": vidur_table().to_dict(orient="records"),
                      "nccl_tests_all_reduce": nccl_table().to_dict(orient="records")}, indent=1))


if __name__ == "__main__":
    main()
