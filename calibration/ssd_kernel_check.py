"""Mamba-2's Triton SSD scan kernels against their published timings.

mamba_ssm's chunked SSD scan (ops/triton/ssd_*.py) runs as Triton kernels of small
per-chunk matmuls interleaved with exponentials of the decay and fp32 state traffic,
far below what cuBLAS reaches on GEMMs of the same FLOPs and bytes. The model prices each
of them (workloads/layer_mamba.py, ``ssd`` ops) at its roofline time (the tensor peak or
the HBM bandwidth, the slower) over one share of that roofline, ``triton_ssd``
``roofline_frac`` in hw_models/data/engines.yaml. That share is fitted here, and only
here: the median over the published kernel timings with a known GPU
(calibration/reference/kernels/mamba2_ssd.csv, ``fit`` 1) of roofline time / measured
time. Rows without a known GPU are priced on H100 and A100 for comparison, not fitted.

    python -m calibration.ssd_kernel_check
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from hw_models import catalog, profile
from hw_models.compute import ComputeModel
from workloads.graph import Compute
from workloads.layer_mamba import chunk_scan_fwd, ssd_forward_ops

CSV = ("reference", "kernels", "mamba2_ssd.csv")
UNKNOWN_GPUS = ("h100-sxm", "a100-80gb")    # where a row without a named GPU is priced


def load() -> pd.DataFrame:
    return pd.read_csv(resources.files("calibration").joinpath(*CSV), comment="#",
                       keep_default_na=False)


def _e(r) -> float:
    return 4.0 if r.dtype == "fp32" else 2.0


def kernel_ops(r) -> list[Compute]:
    """The model's ops of a row's kernel call: ``_chunk_scan_fwd`` alone (no z, C B^T in
    the row's dtype, as the tilelang benchmark passes it) or the whole ungated forward of
    ``mamba_chunk_scan_combined``."""
    L = r.batch * -(-r.seqlen // r.chunk_size) * r.chunk_size
    args = (L, int(r.chunk_size), int(r.nheads), int(r.headdim), int(r.dstate),
            int(r.ngroups), _e(r))
    if r.kernel == "chunk_scan_fwd":
        flops, nbytes = chunk_scan_fwd(*args, gated=False, cb_bytes=_e(r))
        return [Compute("ssd", flops, nbytes, r.dtype, name="ssd_chunk_scan")]
    if r.kernel == "combined_fwd":
        return ssd_forward_ops(*args, r.dtype, gated=False)
    raise ValueError(f"unknown SSD kernel {r.kernel!r}")


def published_s(r) -> float:
    """Measured seconds: as published, or the published throughput's FLOPs (the
    benchmark's count, the same as the model's) over its TFLOPS."""
    if r.ms != "":
        return float(r.ms) * 1e-3
    flops = sum(op.flops for op in kernel_ops(r))
    return flops / (float(r.tflops) * 1e12)


def _model(gpu: str) -> ComputeModel:
    g = catalog.gpu(gpu)
    return ComputeModel(g, profile.load(g.profile))


def model_s(r, cm: ComputeModel) -> float:
    return sum(cm.time(op.op_class, op.flops, op.bytes, op.dtype) for op in kernel_ops(r))


def roofline_s(r, cm: ComputeModel) -> float:
    """The row's SSD kernels at the roofline (tensor peak or HBM, the slower, each)."""
    return sum(cm.roofline(op.flops, op.bytes, op.dtype) for op in kernel_ops(r)
               if op.op_class == "ssd")


def fit_roofline_frac() -> float:
    """Median over the fitted rows of roofline time / (measured time - launch)."""
    fracs = []
    for r in load().itertuples():
        if int(r.fit) != 1:
            continue
        cm = _model(r.gpu)
        fracs.append(roofline_s(r, cm) / (published_s(r) - cm.profile.memory.launch_us * 1e-6))
    return float(np.median(fracs))


def rows() -> pd.DataFrame:
    out = []
    for r in load().itertuples():
        for gpu in ([r.gpu] if r.gpu else UNKNOWN_GPUS):
            cm = _model(gpu)
            meas, pred = published_s(r), model_s(r, cm)
            out.append({"source": r.source, "gpu": gpu if r.gpu else f"({gpu}?)",
                        "kernel": r.kernel, "seqlen": r.seqlen, "fit": int(r.fit),
                        "published_ms": round(meas * 1e3, 3), "model_ms": round(pred * 1e3, 3),
                        "roofline_frac": round(roofline_s(r, cm) / meas, 4),
                        "error_pct": round(100 * (pred / meas - 1), 1)})
    return pd.DataFrame(out)


def main() -> None:
    df = rows()
    print(f"kernel check: Mamba-2 Triton SSD kernels vs published timings ({'/'.join(CSV)}); "
          f"roofline share fitted {fit_roofline_frac():.4f}, in use {catalog.ssd_kernel():.4f}")
    print(df.to_string(index=False))
    fitted = df[df.fit == 1]
    print(f"fitted rows: median |error| {fitted.error_pct.abs().median():.1f}%, "
          f"max {fitted.error_pct.abs().max():.1f}%")


if __name__ == "__main__":
    main()
