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
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

FILE = "collectives/deepep_normal_kernels_h200.csv"


def fit_deepep() -> dict[str, float]:
    df = pd.read_csv(resources.files("calibration").joinpath("reference", FILE), comment="#")
    per_sm = (df.nvl_gb_s / df.sms).mean()
    return {"nvl_gb_s_per_sm": round(float(per_sm), 4), "n_points": len(df)}
