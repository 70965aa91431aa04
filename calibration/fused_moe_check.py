"""vLLM's Triton fused_moe call against its published kernel times (a held-out check).

The serving model (and an RL rollout's vLLM engine) prices one MoE layer's routed experts
as the kernels of workloads/inference/moe_ops.py ``_experts``: the top-k softmax
(``router_topk``), the w13 GEMM (``expert_up``), SiLU-and-mul (``expert_activation``) and
the w2 GEMM (``expert_down``), each at the GPU's profile (hw_models/compute.py: the GEMMs
at the fitted GEMM curve, reading the weights of the experts the batch touches under
uniform routing). vLLM's benchmarks/kernels/benchmark_moe.py times one whole call, ten
calls in a CUDA graph, averaged: those kernels plus the block alignment of the routed
tokens and the sum over the top-k outputs, which the model does not price apart; the
gating logits are given, so no router GEMM.

calibration/reference/inference/vllm_fused_moe_kernel.csv holds the published times of
the Qwen3-30B-A3B shape (E=128, N=768, hidden 2048, top-8, TP 1): BF16 on one B200 (batch
1-4), BF16 on one A100-PCIE-40GB (batch 1-96) and FP8 w8a8 on one H100 (batch 1-4096, two
config sets). Each row is priced here as a serving replica of one GPU prices it (the
GPU's catalog system, its profile, sim/setup.py ``paced_compute``) and compared; nothing
is fitted. ``share`` is the measured call's share of the roofline of its two GEMMs (their
bytes at the HBM bandwidth or their FLOPs at the tensor peak, the slower, summed): a
kernel family not written for an architecture reaches a smaller share there than on
another at the same batch (engines.yaml ``triton_ssd`` ``by_arch``).

    python -m calibration.fused_moe_check
"""

from __future__ import annotations

import statistics
from functools import cache
from importlib import resources

import pandas as pd

from calibration.fitting import fit_line
from hw_models import catalog
from hw_models.compute import ComputeModel
from sim import scenario
from sim.setup import paced_compute, resolve_cluster
from workloads.inference.moe_ops import MoEIterationOps
from workloads.model import resolve

CSV = ("reference", "inference", "vllm_fused_moe_kernel.csv")
MODEL = "qwen3-30b-a3b"                   # the published rows' shape: E 128, N 768, h 2048, top-8
CALL = ("router_topk", "moe_align", "moe_sort", "expert_up", "expert_activation", "expert_down",
        "moe_sum")
GEMMS = ("expert_up", "expert_down")
SMALL = (1, 2, 4)                         # the batch sizes of the B200 rows
FIT_GPUS = ("b200", "h100-sxm")           # the alignment floor is fitted on these GPUs' rows


def load() -> pd.DataFrame:
    return pd.read_csv(resources.files("calibration").joinpath(*CSV), comment="#")


@cache
def compute_model(gpu: str) -> ComputeModel:
    """The compute model of a one-GPU serving replica on ``gpu``'s catalog system."""
    sc = scenario.parse({"cluster": {"system": catalog.system_for_gpu(gpu), "nodes": 1},
                         "workload": {"kind": "inference", "model": MODEL, "precision": "bf16"}})
    cl = resolve_cluster(sc)
    return paced_compute(cl.gpu, cl.profile, 1.0, 1)


def call_ops(batch: int, dtype: str) -> list:
    """The model's kernels of one fused_moe call over ``batch`` tokens at TP 1."""
    ops = MoEIterationOps(resolve(MODEL), 1, 1, dtype)
    return [o for o in ops.token_ops(batch, moe=True) if o.name in CALL]


def price(gpu: str, batch: int, dtype: str) -> dict[str, float]:
    """Seconds of each kernel of the call on ``gpu``."""
    cm = compute_model(gpu)
    return {o.name: cm.time(o.op_class, o.flops, o.bytes, o.dtype, shape=o.shape)
            for o in call_ops(batch, dtype)}


def roofline_s(gpu: str, batch: int, dtype: str) -> float:
    """Roofline seconds of the call's two expert GEMMs."""
    cm = compute_model(gpu)
    return sum(cm.roofline(o.flops, o.bytes, o.dtype) for o in call_ops(batch, dtype)
               if o.name in GEMMS)


def table(df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every published row with the model's time, model / measured and the share."""
    df = load() if df is None else df
    rows = []
    for r in df.itertuples():
        parts = price(r.gpu, int(r.batch), r.dtype)
        model_us = sum(parts.values()) * 1e6
        us = float(r.kernel_us)
        rows.append({"source": r.source_id, "gpu": r.gpu, "dtype": r.dtype, "config": r.config,
                     "batch": int(r.batch), "measured_us": us, "model_us": model_us,
                     "model_over_measured": model_us / us,
                     "share": roofline_s(r.gpu, int(r.batch), r.dtype) * 1e6 / us})
    return pd.DataFrame(rows)


def intercept(x, y) -> float:
    """The intercept of the least-squares line of y on x."""
    return fit_line(x, y)[0]


def fit_align_floor(df: pd.DataFrame | None = None) -> float:
    """Microseconds of latency floor of the block alignment (engines.yaml vllm_fused_moe
    ``align_floor_us``): the intercept of the least-squares line through the published
    call times less the model's call without that floor, over the B200 and H100 rows at
    1, 2 and 4 tokens (the fixed cost per call the other kernels' launches and bytes leave
    unpriced). The A100 rows and every row above 4 tokens are left to check it."""
    df = load() if df is None else df
    rows = df[df.gpu.isin(FIT_GPUS) & df.batch.isin(SMALL)]
    floor_us = catalog.moe_align_floor_s() * 1e6
    resid = [float(r.kernel_us) - (sum(price(r.gpu, int(r.batch), r.dtype).values()) * 1e6 - floor_us)
             for r in rows.itertuples()]
    return intercept(rows.batch, resid)


def fixed_costs(t: pd.DataFrame) -> pd.DataFrame:
    """Per GPU, dtype and config: the intercept of the least-squares line through the
    measured and through the model's call times at 1, 2 and 4 tokens (microseconds)."""
    t = t[t.batch.isin(SMALL)]
    g = t.groupby(["gpu", "dtype", "config"], sort=False)
    return pd.DataFrame({"measured_fixed_us": g.apply(lambda x: intercept(x.batch, x.measured_us)),
                         "model_fixed_us": g.apply(lambda x: intercept(x.batch, x.model_us))}
                        ).reset_index()


def summary(t: pd.DataFrame, batches: tuple[int, ...] | None = None) -> pd.DataFrame:
    """Median model / measured and median share per GPU, dtype and config, over
    ``batches`` (all where None)."""
    if batches is not None:
        t = t[t.batch.isin(batches)]
    g = t.groupby(["gpu", "dtype", "config"], sort=False)
    return pd.DataFrame({"rows": g.size(),
                         "median_model_over_measured": g.model_over_measured.median(),
                         "median_share": g.share.median()}).reset_index()


def common_batches(t: pd.DataFrame) -> tuple[int, ...]:
    """Batch sizes every GPU of the table has (1, 2, 4 with the B200 rows)."""
    sets = [set(x.batch) for _, x in t.groupby("gpu")]
    return tuple(sorted(set.intersection(*sets)))


def main() -> None:
    t = table()
    pd.set_option("display.width", 160)
    print(t.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    common = common_batches(t)
    print(f"\nAt the batch sizes every GPU has ({', '.join(map(str, common))}):")
    print(summary(t, common).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nAll rows:")
    print(summary(t).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nFixed cost per call (intercept of the 1-4 token line):")
    print(fixed_costs(t).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"\nAlignment floor fitted on {', '.join(FIT_GPUS)}: {fit_align_floor():.2f} us "
          f"(engines.yaml vllm_fused_moe: {catalog.moe_align_floor_s() * 1e6:.2f} us)")
    big = t[t.batch >= 8]
    if len(big):
        print(f"\nBatch >= 8: median model / measured "
              f"{statistics.median(big.model_over_measured):.3f} over {len(big)} rows")


if __name__ == "__main__":
    main()
