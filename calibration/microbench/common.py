"""Timing and the tidy CSV shared by the kernel and collective runners."""

from __future__ import annotations

import datetime as _dt
import gc
import platform
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hw_models.errors import ClusterSimError

# Columns every microbenchmark CSV carries; the parser checks them.
META_COLUMNS = ["suite", "op", "dtype", "device", "device_name", "torch_version", "threads",
                "date", "n_samples", "samples_s", "median_s", "iqr_s"]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_device(device: str) -> torch.device:
    if device not in ("cpu", "cuda"):
        raise ClusterSimError(f"device {device!r} is not supported; allowed: cpu, cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ClusterSimError("device 'cuda' requested but torch sees no CUDA GPU on this machine")
    return torch.device(device)


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return platform.processor() or platform.machine()


# ~1 ms at H100/A100 clocks (1.4-2 GHz): longer than torch's dispatch of any call timed
# (a fused Adam step over 8 tensors dispatches for a few hundred us on a busy host).
GPU_SPIN_CYCLES = 2_000_000


def time_fn(fn: Callable[[], object], dev: torch.device, warmup: int, reps: int,
            block_s: float = 0.0, cpu: list[float] | None = None) -> list[float]:
    """Seconds per call: CUDA events on a GPU (device time), perf_counter on a CPU.

    ``block_s`` > 0 (CPU): each sample is the mean over a block of back-to-back calls
    lasting about ``block_s`` (torch.utils.benchmark's blocked_autorange). On cores shared
    with other processes a single short call usually runs without being descheduled, a
    long training step never does; blocks longer than the scheduler's time slice (a few
    ms, Linux CFS) average the time slicing in, as the step does."""
    for _ in range(warmup):
        fn()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        gc.collect()
        gc.disable()   # no collection inside the timed calls (as timeit does)
        out = []
        try:
            for _ in range(reps):
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                # Keep the GPU busy while the host queues the events and the call: the
                # elapsed time is then the call's device time, not the host's dispatch
                # latency, which a training step's host hides by running ahead (triton's
                # do_bench does the same).
                torch.cuda._sleep(GPU_SPIN_CYCLES)
                start.record()
                fn()
                end.record()
                end.synchronize()
                out.append(start.elapsed_time(end) * 1e-3)
        finally:
            gc.enable()
        return out
    import time
    calls = 1
    if block_s > 0:
        t0 = time.perf_counter()
        fn()
        calls = max(1, round(block_s / max(time.perf_counter() - t0, 1e-7)))
    out = []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - t0) / calls)
        if cpu is not None:
            cpu.append((time.process_time() - c0) / calls)
    return out


def summary(samples: list[float], cpu: list[float] | None = None) -> dict[str, object]:
    arr = np.asarray(samples, float)
    q1, q3 = np.percentile(arr, [25, 75])
    out = {"n_samples": len(arr), "samples_s": ";".join(f"{s:.6g}" for s in arr),
           "median_s": float(np.median(arr)), "iqr_s": float(q3 - q1)}
    if cpu:
        out["cpu_median_s"] = float(np.median(cpu))
    return out


def meta(suite: str, dev: torch.device) -> dict[str, object]:
    return {"suite": suite, "device": dev.type, "device_name": device_name(dev),
            "torch_version": torch.__version__, "threads": torch.get_num_threads(),
            "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def write_csv(rows: list[dict[str, object]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    front = [c for c in META_COLUMNS if c in df.columns]
    df[front + [c for c in df.columns if c not in front]].to_csv(path, index=False)
    return path
