"""The NVLink-side throughput of DeepEP's internode normal kernels per SM (profile
``deepep.nvl_gb_s_per_sm``; sim/network/deepep.py).

Their NVLink forwarders and receivers are warps of the kernel's SMs (Buffer.num_sms, two
per channel). On two nodes a GPU forwards every token to about 3.3 GPUs of its node for
every copy it sends over RDMA, and the kernel then moves fewer bytes than NVLink
carries: a user's two-node H200 run (NVLink 450 GB/s per direction) moved 125-145 GB/s
of received copies with 24 SMs, about what H800 (NVLink 200 GB/s) reaches on two nodes
in DeepEP's own table (43 GB/s RDMA x 3.3). The rate per SM is the mean of the H200
run's two kernels over its 24 SMs (calibration/reference/collectives/
deepep_normal_kernels_h200.csv); DeepEP's own H800 tables stay out of the fit and
check it (calibration/deepep_check.py).

``overlap_rate_frac``: the fraction of their standalone rate the same kernels reach while
compute runs beside them (catalog ``deepep_overlap_rate_frac``, hw_models/data/
fabric.yaml). DeepSeek's training profile (H800, EP64, 4096 tokens per micro-batch,
DualPipe) shows each dispatch and combine beside compute; the standalone time of the same
call is the bytes DeepEP's benchmark counts at that shape over DeepEP's published EP64
H800 bandwidth (deepep_normal_kernels.csv). The fraction is their summed standalone time
over their summed traced time (the cached dispatches, as the benchmark times them, and
the combines; calibration/reference/kernels/deepseek_train_deepep_overlap.csv).
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from calibration.deepep_check import _ctx, counted_bytes

FILE = "collectives/deepep_normal_kernels_h200.csv"
OVERLAP = "kernels/deepseek_train_deepep_overlap.csv"
TRACE_EP, TRACE_TOKENS = 64, 4096       # the training profile's EP group and micro-batch


def fit_deepep() -> dict[str, float]:
    df = pd.read_csv(resources.files("calibration").joinpath("reference", FILE), comment="#")
    per_sm = (df.nvl_gb_s / df.sms).mean()
    return {"nvl_gb_s_per_sm": round(float(per_sm), 4), "n_points": len(df)}


def overlap_rate_frac() -> dict[str, float]:
    ref = resources.files("calibration").joinpath("reference")
    trace = pd.read_csv(ref.joinpath(OVERLAP), comment="#")
    trace = trace[trace.kind.isin(["dispatch_cached", "combine"])]
    bench = pd.read_csv(ref.joinpath("collectives", "deepep_normal_kernels.csv"), comment="#")
    bench = bench[(bench.type == "internode") & (bench.ep == TRACE_EP) & (bench.link == "rdma")]
    ctx, _ = _ctx(TRACE_EP, TRACE_TOKENS, False)
    alone = {}
    for r in bench.itertuples():
        combine = r.phase == "combine"
        alone["combine" if combine else "dispatch_cached"] = counted_bytes(
            ctx, TRACE_TOKENS, combine, "rdma") / (r.bandwidth_gb_s * 1e9)
    standalone = sum(alone[k] for k in trace.kind)
    traced = float(trace.duration_us.sum()) * 1e-6
    return {"deepep_overlap_rate_frac": round(standalone / traced, 2),
            "dispatch_standalone_us": round(alone["dispatch_cached"] * 1e6),
            "combine_standalone_us": round(alone["combine"] * 1e6), "n_points": len(trace)}
