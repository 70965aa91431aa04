"""The paged decode-attention kernel's cost, fitted on FlashAttention-2's published H100 times.

The serving model prices one decode step's attention (workloads/inference/ops.py
``attention_ops``, ``decode_attn``) as hw_models/compute.py ``decode_attention``:

    time = floor + bytes / (hbm_bw x bw_eff x L^n / (L^n + L_half^n))

with ``bytes`` the K and V pages read plus the queries read and the outputs written (nvbench's
Read + Write), L the cached tokens per sequence and bw_eff the share of the HBM bandwidth
that STREAM reaches on the GPU (its profile's ``memory.bw_eff``, 0.876 on H100): at long
contexts the kernel streams the cache as fast as a copy does, no faster. The three
constants floor, L_half and n (engines.yaml ``flash_decode_paged``) are the least-squares
fit in log time over the H100 rows of
calibration/reference/kernels/paged_decode_attention_h100.csv: nvbench tables of
FlashAttention-2's paged batch decode, 64 sequences, page 256, head 128, with 64 query /
8 KV heads (Llama-3-70B) and 32 / 32 heads (MHA), 32-512 cached tokens per sequence.
Nothing is fitted to a validation table.

    python -m calibration.decode_attention_check
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from hw_models import catalog
from hw_models.compute import ComputeModel, paged_decode_s
from hw_models.profile import load as load_profile

CSV = ("reference", "kernels", "paged_decode_attention_h100.csv")
GPU = "h100-sxm"
MIB = 2.0 ** 20


def load() -> pd.DataFrame:
    return pd.read_csv(resources.files("calibration").joinpath(*CSV), comment="#")


def row_bytes(df: pd.DataFrame) -> np.ndarray:
    """nvbench's Read + Write of each row, bytes."""
    return ((df.read_mib + df.write_mib) * MIB).to_numpy(float)


def fit(df: pd.DataFrame | None = None) -> dict[str, float]:
    """(floor_us, kv_half_tokens, ramp_exponent): least squares of log model / measured
    time, the long-context share held at the H100 profile's STREAM share."""
    df = load() if df is None else df
    b, kv = row_bytes(df), df.seq_len.to_numpy(float)
    t = df.gpu_time_us.to_numpy(float) * 1e-6
    bw, bw_eff = catalog.gpu(GPU).hbm_bw, load_profile("h100").memory.bw_eff

    def log_ratio(th):
        return np.log(paged_decode_s((th[0] * 1e-6, th[1], th[2]), b, kv, bw, bw_eff) / t)
    res = least_squares(log_ratio, [10.0, 60.0, 1.5], bounds=([0.0, 1.0, 0.5], [1000.0, 1e4, 6.0]))
    return dict(zip(("floor_us", "kv_half_tokens", "ramp_exponent"), map(float, res.x),
                    strict=True))


def table(df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each row with the simulator's price of it (engines.yaml constants) and the price of
    the plain memory-bound op it replaces (launch + bytes at the STREAM-fitted share)."""
    df = (load() if df is None else df).copy()
    cm = ComputeModel(catalog.gpu(GPU), load_profile("h100"))
    b = row_bytes(df)
    df["model_us"] = [cm.decode_attention(x, float(k)) * 1e6 for x, k in zip(b, df.seq_len, strict=True)]
    df["stream_us"] = [cm.memory_bound(x, "other") * 1e6 for x in b]
    df["err"] = df.model_us / df.gpu_time_us - 1
    df["stream_err"] = df.stream_us / df.gpu_time_us - 1
    return df


def main() -> None:
    t = table()
    cols = ["config", "num_seqs", "seq_len", "num_kv_heads", "gpu_time_us", "model_us", "err",
            "stream_us", "stream_err"]
    print(t[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\nmedian |err| {t.err.abs().median():.3f}, max {t.err.abs().max():.3f} "
          f"(memory-bound op before: median {t.stream_err.abs().median():.3f})")
    k = catalog.serving_engines()["flash_decode_paged"]
    f = fit()
    print("fit:          " + ", ".join(f"{n} {v:.4g}" for n, v in f.items()))
    print("engines.yaml: " + ", ".join(f"{n} {k[n]}" for n in f))


if __name__ == "__main__":
    main()
