"""Collective microbenchmarks through torch.distributed across N local processes.

    python -m calibration.microbench.collectives --device cpu --nprocs 2 --out DIR [--quick]

gloo on CPU, NCCL on GPUs (one process per GPU). Results are in nccl-tests units:
``size_bytes`` is the buffer as nccl-tests counts it (the full gathered/scattered array
for all_gather/reduce_scatter/all_to_all), ``algbw = size / time`` and
``busbw = algbw * bus_factor`` (nccl-tests doc/PERFORMANCE.md). One sample is one
iteration's time, the maximum over ranks (the slowest rank finishes the collective).
An op the backend does not implement (gloo has no reduce_scatter) is skipped and named
in the ``skipped`` note of the run.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from calibration.microbench.common import check_device, meta, summary, write_csv
from hw_models.errors import ClusterSimError
from sim.network.analytical import bus_factor

# torch >= 2.13 renames reduce_scatter_tensor; use whichever this torch has.
_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "reduce")
SIZES = {False: tuple(1024 * 4**i for i in range(8)),     # 1 KiB .. 16 MiB
         True: (1024, 65536, 1048576)}
REPS = {False: (3, 10), True: (1, 3)}                     # (warm-up, timed) iterations


def _call(op: str, buf: torch.Tensor, out: torch.Tensor, n: int) -> None:
    if op == "all_reduce":
        dist.all_reduce(buf)
    elif op == "all_gather":
        dist.all_gather(list(out.chunk(n)), buf[: out.numel() // n])
    elif op == "reduce_scatter":
        _reduce_scatter(out[: buf.numel() // n], buf)
    elif op == "all_to_all":
        dist.all_to_all_single(out, buf)
    elif op == "broadcast":
        dist.broadcast(buf, src=0)
    else:
        dist.reduce(buf, dst=0)


def _time(op: str, nbytes: int, n: int, dev: torch.device, reps: tuple[int, int],
          block_s: float = 0.0, cpu: list[float] | None = None) -> list[float]:
    """Seconds per call; ``block_s`` > 0: each sample is the mean over back-to-back calls
    lasting about that long (see common.time_fn; all ranks agree on the block length)."""
    count = max(n, nbytes // 4 // n * n)      # float32 elements, divisible by the ranks
    buf = torch.ones(count, device=dev)
    out = torch.empty(count, device=dev)
    for _ in range(reps[0]):
        _call(op, buf, out, n)
    calls = 1
    if block_s > 0:
        dist.barrier()
        t0 = time.perf_counter()
        _call(op, buf, out, n)
        est = torch.tensor([time.perf_counter() - t0])
        dist.all_reduce(est, op=dist.ReduceOp.MAX)
        calls = max(1, round(block_s / max(float(est), 1e-7)))
    samples = []
    for _ in range(reps[1]):
        dist.barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(calls):
            _call(op, buf, out, n)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        samples.append((time.perf_counter() - t0) / calls)
        if cpu is not None:
            cpu.append((time.process_time() - c0) / calls)
    return samples


def _supported(op: str, n: int, dev: torch.device) -> bool:
    try:
        _call(op, torch.ones(n, device=dev), torch.empty(n, device=dev), n)
        return True
    except (RuntimeError, ValueError, NotImplementedError):
        return False


def _worker(rank: int, n: int, device: str, store: str, ops: tuple[str, ...], quick: bool,
            out_csv: str) -> None:
    dev = torch.device(device if device == "cpu" else f"cuda:{rank}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group("gloo" if dev.type == "cpu" else "nccl", init_method=f"file://{store}",
                            rank=rank, world_size=n)
    torch.set_num_threads(1)
    rows = sweep(ops, dev, quick)
    if rank == 0:
        write_csv(rows, Path(out_csv))
    dist.destroy_process_group()


def sweep(ops: tuple[str, ...], dev: torch.device, quick: bool, block_s: float = 0.0,
          sizes: tuple[int, ...] | None = None) -> list[dict]:
    """Every rank of an initialised process group calls this; all get the same rows.
    ``sizes`` (bytes) replaces the default sweep of ``quick``."""
    n = dist.get_world_size()
    rows, base = [], meta("collectives", dev) | {"backend": dist.get_backend(), "n_ranks": n}
    for op in ops:
        if not _supported(op, n, dev):
            rows.append(base | {"op": op, "skipped": f"{dist.get_backend()} does not implement {op}"})
            continue
        for size in sizes or SIZES[quick]:
            cpu: list[float] = []
            local = _time(op, size, n, dev, REPS[quick], block_s, cpu)
            allr: list[list[list[float]]] = [[] for _ in range(n)]
            dist.all_gather_object(allr, [local, cpu])
            row = _row(op, size, n, np.max(np.array([a[0] for a in allr]), axis=0).tolist())
            if dev.type == "cpu":     # the slowest rank's CPU seconds per call (median)
                row["cpu_median_s"] = max(float(np.median(a[1])) for a in allr)
            rows.append(base | row)
    return rows


def _row(op: str, size: int, n: int, samples: list[float]) -> dict:
    count = max(n, size // 4 // n * n)
    nbytes = 4 * count
    s = summary(samples)
    algbw = nbytes / s["median_s"] / 1e9
    return {"op": op, "dtype": "fp32", "size_bytes": nbytes, "count": count, "type": "float",
            "redop": "sum" if op in ("all_reduce", "reduce_scatter", "reduce") else "none",
            "root": 0 if op in ("broadcast", "reduce") else -1,
            "time_us": s["median_s"] * 1e6, "algbw_gb_s": algbw,
            "busbw_gb_s": algbw * bus_factor(op, n), **s}


def run(device: str, out: Path, nprocs: int = 2, quick: bool = False,
        ops: tuple[str, ...] = OPS) -> Path:
    """Spawn ``nprocs`` local ranks and sweep ``ops`` over the sizes; returns the CSV path."""
    dev = check_device(device)
    bad = [o for o in ops if o not in OPS]
    if bad:
        raise ClusterSimError(f"collective {bad[0]!r} is unknown; allowed: {', '.join(OPS)}")
    if nprocs < 2:
        raise ClusterSimError(f"nprocs must be at least 2 for a collective, got {nprocs}")
    if dev.type == "cuda" and nprocs > torch.cuda.device_count():
        raise ClusterSimError(f"nprocs {nprocs} exceeds the {torch.cuda.device_count()} GPUs here")
    out_csv = Path(out) / f"collectives_{dev.type}_{nprocs}r.csv"
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        mp.start_processes(_worker, args=(nprocs, device, store, tuple(ops), quick, str(out_csv)),
                           nprocs=nprocs, join=True, start_method="spawn")
    return out_csv


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--nprocs", type=int, default=2)
    ap.add_argument("--out", default="calib_out")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    print(run(a.device, Path(a.out), a.nprocs, a.quick))
