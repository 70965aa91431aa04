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

Those timings are Hopper's. On other architectures the same Triton kernels do not reach the
same share of the roofline (they are not written for Blackwell's tensor-core instructions),
so ``triton_ssd`` ``by_arch`` holds a share per architecture where a published run gives
one: a pure Mamba-2 model trained on one GPU of each kind
(calibration/reference/kernels/mamba2_training_throughput.csv). Its throughputs count the
same FLOPs on every GPU, so a row's step time is the anchor row's (an H200: Hopper's share)
times the anchor's throughput over the row's. The step's compute time is linear in
1 / share, t = A + B / share with B the roofline seconds of its SSD kernels, which gives
the share in closed form (``fit_arch_shares``).

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
RUNS_CSV = ("reference", "kernels", "mamba2_training_throughput.csv")
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


def load_runs() -> pd.DataFrame:
    return pd.read_csv(resources.files("calibration").joinpath(*RUNS_CSV), comment="#")


def run_model(r) -> dict:
    """mamba_ssm's Mamba-2 at the row's width (expand 2, heads of 64, d_state 128, one
    group, chunk 256, tied embeddings), every layer a Mamba mixer."""
    return {"layers": int(r.n_layers), "hidden": int(r.d_model), "heads": int(r.d_model) // 64,
            "ffn_hidden": 4 * int(r.d_model), "vocab": int(r.vocab), "seq_len": int(r.seq_len),
            "norm": "rmsnorm", "bias": False, "no_positions": True, "tied_embeddings": True,
            "dropout": False, "hybrid_pattern": "M" * int(r.n_layers),
            "mamba": {"heads": 2 * int(r.d_model) // 64, "head_dim": 64, "state_dim": 128,
                      "groups": 1}}


def run_compute_s(r) -> float:
    """The simulator's compute seconds of one step of the row on one GPU of its system
    (data parallel over the node, one micro-batch of the row's batch per GPU), at the SSD
    shares in use."""
    from sim.scenario import parse
    from sim.simulate import simulate
    dp = catalog.system(r.system).gpus_per_node
    sc = parse({"name": f"mamba2-{r.gpu}", "cluster": {"system": r.system, "nodes": 1},
                "workload": {"kind": "training", "model": run_model(r), "seq_len": int(r.seq_len),
                             "global_batch": int(r.batch) * dp, "micro_batch": int(r.batch),
                             "precision": "bf16", "parallel": {"tp": 1, "pp": 1, "dp": dp},
                             "recompute": "none"}}, "ssd_kernel_check")
    return float(simulate(sc, band=False).breakdown["compute"])


def run_ssd_roofline_s(r) -> float:
    """B: the roofline seconds of the step's SSD kernels (every layer's forward and
    backward), on the row's GPU."""
    from workloads.graph import CommGroup
    from workloads.layers import LayerContext
    from workloads.model import resolve
    from workloads.moe_layers import hybrid_backward_at, hybrid_forward_at
    cm = _model(catalog.system(r.system).gpu)
    ctx = LayerContext(resolve(run_model(r)), int(r.batch), 1, False, "bf16", CommGroup((0,), "tp"))
    ops = [*hybrid_forward_at(ctx, 0), *hybrid_backward_at(ctx, 0)]
    layer = sum(cm.roofline(o.flops, o.bytes, o.dtype) for o in ops
                if isinstance(o, Compute) and o.op_class == "ssd")
    return int(r.n_layers) * layer


def run_rows() -> pd.DataFrame:
    """Each run against the anchor: the published and predicted step-time ratios at the
    shares in use, and the share that reproduces the published ratio."""
    runs = load_runs()
    anchor = runs[runs.anchor == 1].iloc[0]
    t_anchor = run_compute_s(anchor)
    out = []
    for r in runs.itertuples():
        t = run_compute_s(r)
        share = catalog.ssd_kernel(r.arch)
        B = run_ssd_roofline_s(r)
        target = t_anchor * anchor.tflops / r.tflops
        fitted = B / (target - (t - B / share))
        out.append({"gpu": r.gpu, "arch": r.arch, "fit": int(r.fit), "published_tflops": r.tflops,
                    "published_speedup": round(r.tflops / anchor.tflops, 3),
                    "predicted_speedup": round(t_anchor / t, 3),
                    "error_pct": round(100 * (t_anchor / t * anchor.tflops / r.tflops - 1), 1),
                    "share_in_use": round(share, 4), "share_fitted": round(fitted, 4)})
    return pd.DataFrame(out)


def fit_arch_shares() -> dict[str, float]:
    """The SSD kernels' roofline share per architecture of the fitted runs."""
    df = run_rows()
    return {r.arch: float(r.share_fitted) for r in df.itertuples() if r.fit == 1}


def main() -> None:
    df = rows()
    print(f"kernel check: Mamba-2 Triton SSD kernels vs published timings ({'/'.join(CSV)}); "
          f"roofline share fitted {fit_roofline_frac():.4f}, in use {catalog.ssd_kernel():.4f}")
    print(df.to_string(index=False))
    fitted = df[df.fit == 1]
    print(f"fitted rows: median |error| {fitted.error_pct.abs().median():.1f}%, "
          f"max {fitted.error_pct.abs().max():.1f}%")
    print(f"\nMamba-2 training runs against the anchor GPU ({'/'.join(RUNS_CSV)}): speed-up "
          "over the anchor, published and predicted at the shares in use (fit 1: the "
          "architecture's share is fitted on the row; fit 0: a check)")
    print(run_rows().to_string(index=False))


if __name__ == "__main__":
    main()
