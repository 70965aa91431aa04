"""The FP8 GEMM curve at small M against published Hopper FP8 GEMM timings.

The built-in H100 ``fp8`` GEMM curve (calibration/build_profiles.py) is fitted on
cuBLASLt's FP8 sweep, whose smallest M is 1024; the GEMMs of a 64-128-token prefill or
decode batch are an extrapolation of it. DeepGEMM's README publishes FP8 GEMM rates on
H800 (H100 SXM5 compute and HBM) at M = 64, 128 and 4096 for the dense and grouped
shapes of DeepSeek-V3, with its speedup over DeepSeek's CUTLASS 3.6 implementation
(calibration/reference/kernels/deepgemm_h800_fp8.csv). Each row is priced here as the
model prices that kernel: a dense GEMM (m, n, k) with FP8 operands and a 16-bit output;
a grouped one as the serving MoE layer prices its experts (workloads/inference/moe_ops.py:
the FLOPs and bytes of every group, the shape of one group). Nothing is fitted on these
rows.

    python -m calibration.fp8_gemm_check
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from hw_models import catalog, profile
from hw_models.compute import ComputeModel

CSV = ("reference", "kernels", "deepgemm_h800_fp8.csv")
GPU = "h800"
SPEEDUP_STEP = 0.05       # the speedups are published to one decimal: +-0.05


def load() -> pd.DataFrame:
    return pd.read_csv(resources.files("calibration").joinpath(*CSV), comment="#")


def published_us(r) -> tuple[float, float, float]:
    """DeepGEMM's time (us) and the CUTLASS baseline's, lowest and highest the published
    one-decimal speedup allows."""
    t = 2.0 * r.groups * r.m * r.n * r.k / (r.tflops * 1e12) * 1e6
    return t, t * (r.speedup - SPEEDUP_STEP), t * (r.speedup + SPEEDUP_STEP)


def table_bytes(r) -> float:
    """Bytes the README's bandwidth column counts: FP8 A and B, BF16 C, per group."""
    return r.groups * (r.m * r.k + r.k * r.n + 2.0 * r.m * r.n)


def model_us(r, cm: ComputeModel) -> float:
    flops = 2.0 * r.groups * r.m * r.n * r.k
    return cm.gemm(flops, table_bytes(r), "fp8", (int(r.m), int(r.n), int(r.k))) * 1e6


def rows(profile_name: str | None = None) -> pd.DataFrame:
    gpu = catalog.gpu(GPU)
    cm = ComputeModel(gpu, profile.load(profile_name or gpu.profile))
    out = []
    for r in load().itertuples():
        dg, cut_lo, cut_hi = published_us(r)
        cut = dg * r.speedup
        pred = model_us(r, cm)
        out.append({"layout": r.layout, "groups": r.groups, "m": r.m, "n": r.n, "k": r.k,
                    "deepgemm_us": round(dg, 1), "cutlass_us": round(cut, 1),
                    "model_us": round(pred, 1),
                    "vs_deepgemm_pct": round((pred / dg - 1) * 100, 1),
                    "vs_cutlass_pct": round((pred / cut - 1) * 100, 1),
                    "vs_cutlass_range_pct": f"{(pred / cut_hi - 1) * 100:+.0f}..{(pred / cut_lo - 1) * 100:+.0f}"})
    return pd.DataFrame(out)


if __name__ == "__main__":
    df = rows()
    print(df.to_string(index=False))
    small = df[(df.layout == "dense") & (df.m <= 128)]
    print(f"\ndense, M <= 128 ({len(small)} rows): model vs DeepGEMM median "
          f"{small.vs_deepgemm_pct.median():+.1f}% (range {small.vs_deepgemm_pct.min():+.1f}.."
          f"{small.vs_deepgemm_pct.max():+.1f}%), vs its CUTLASS 3.6 baseline median "
          f"{small.vs_cutlass_pct.median():+.1f}% (range {small.vs_cutlass_pct.min():+.1f}.."
          f"{small.vs_cutlass_pct.max():+.1f}%)")
