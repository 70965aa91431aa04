"""Microbenchmark plumbing: rank merge, operand rotation, blocked timing (no timings asserted)."""

import torch

from calibration.microbench import kernels
from calibration.microbench.common import summary, time_fn


def test_merge_ranks_keeps_the_slowest_rank_per_sample():
    a = {"op": "gemm", **summary([1.0, 5.0, 2.0], [0.9, 4.0, 1.5])}
    b = {"op": "gemm", **summary([3.0, 1.0, 2.5], [2.0, 1.0, 2.0])}
    row = kernels.merge_ranks([[a], [b]])[0]
    assert row["samples_s"] == "3;5;2.5" and row["median_s"] == 3.0
    assert row["cpu_median_s"] == 2.0 and row["procs"] == 2


def test_rotation_spans_cold_bytes_and_cycles():
    rot = kernels._Rotation(lambda: (torch.zeros(1024),), cold_bytes=10 * 4096)   # 4 KiB sets
    assert len(rot.sets) == 10
    seen = {id(rot(lambda t: t)) for _ in range(20)}
    assert len(seen) == 10
    assert len(kernels._Rotation(lambda: (torch.zeros(8),), 0).sets) == 1


def test_blocked_timing_averages_over_calls():
    calls = []
    cpu: list[float] = []
    out = time_fn(lambda: calls.append(1), torch.device("cpu"), warmup=2, reps=3,
                  block_s=1e-4, cpu=cpu)
    assert len(out) == 3 and len(cpu) == 3
    assert len(calls) > 2 + 1 + 3          # warm-up, the estimate, then blocks of many calls


def test_training_gemm_layouts():
    shapes = kernels.transformer_gemms(128, 64, 256)
    assert len(shapes) == 12 and {s[3] for s in shapes} == {"nt", "nn", "tn"}
    a, b = kernels._operands(3, 5, 7, "tn", "cpu", torch.float32)
    assert a.shape == (3, 7) and b.shape == (7, 5) and not a.is_contiguous()
