"""Closed loop on this CPU (quick): calibrate in 2 lockstep processes, time a real DDP GPT
step, predict it from the fitted profile. The check is on CPU time (process_time of each
rank), which other jobs sharing the cores do not inflate; wall-clock error is reported by
benchmarks/closed_loop_cpu.py with its spread (docs/calibration.md)."""

import importlib
import sys
from pathlib import Path

import pytest

BENCH = str(Path(__file__).resolve().parents[2] / "benchmarks")


def _load():
    # A plain import (not from a file spec): spawned ranks re-import the module by name,
    # with the parent's sys.path.
    if BENCH not in sys.path:
        sys.path.insert(0, BENCH)
    return importlib.import_module("closed_loop_cpu")


def test_step_op_list_counts_every_gemm_flop():
    # Independent count: 6 x (linear weights) x tokens FLOPs per training step
    # (forward 2, backward 4; Kaplan et al. 2020), attention excluded.
    cl = _load()
    c, t = cl.CFG, cl.CFG["batch"] * cl.CFG["seq"]
    h = c["hidden"]
    weights = c["layers"] * (3 * h * h + h * h + 8 * h * h) + c["vocab"] * h
    gemm = sum(f for _, cls, f, _, _ in cl.step_ops(c) if cls == "gemm")
    assert gemm == pytest.approx(6 * weights * t)


def test_ddp_buckets_hold_every_gradient():
    cl = _load()
    _, buckets = cl.ddp_ops(cl.CFG)
    assert sum(buckets) == 4 * sum(cl.param_sizes(cl.CFG))
    assert buckets[0] == 4 * cl.CFG["vocab"] * cl.CFG["hidden"]   # first 1 MiB bucket: the head


@pytest.mark.slow
def test_closed_loop_quick_within_40pct():
    out = _load().closed_loop(quick=True, repeats=1)
    cpu = out["cpu_clock"]
    assert cpu["measured_step_s"] > 0 and cpu["predicted_step_s"] > 0
    assert abs(cpu["error_pct"]) < 40, out
