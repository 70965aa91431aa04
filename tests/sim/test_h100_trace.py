"""A real H100 trace (torch 2.11, cuBLAS 13, cuDNN SDPA): 12-layer GPT, hidden 2048, seq
4096, micro-batch 2, bf16 + fused Adam; 2 profiled steps, GPU-bound (benchmarks/gpu_step.py).

Expected values are read from the trace JSON directly, not through the importer."""

from __future__ import annotations

import gzip
import json

import pytest

from sim.replay import replay
from sim.whatif import WhatIf
from tests.paths import TRACES
from tests.sim.test_replay import model_slope
from workloads.traces import kineto
from workloads.traces.classify import classify

TRACE = TRACES / "h100_gpt_1p3b_s4k.json.gz"
# Step time of the same configuration timed with CUDA events, profiler off (gpu_step.py).
CUDA_EVENT_STEP_S = 0.0936


@pytest.fixture(scope="module")
def raw():
    with gzip.open(TRACE) as f:
        return json.load(f)["traceEvents"]


@pytest.fixture(scope="module")
def trace():
    return kineto.load(TRACE)


@pytest.fixture(scope="module")
def h100_to_a100(trace):
    return replay(trace, WhatIf("dgx-h100", "dgx-a100"))


def _gpu_steps(raw) -> list[dict]:
    """Kineto's own GPU copies of the ProfilerStep annotations (GPU work of each step)."""
    return sorted((e for e in raw if e.get("cat") == "gpu_user_annotation"
                   and e["name"].startswith("ProfilerStep#")), key=lambda e: e["ts"])


def _per_step_us(raw, keep) -> float:
    steps = _gpu_steps(raw)
    lo, hi = steps[0]["ts"], steps[-1]["ts"] + steps[-1]["dur"]
    return sum(e["dur"] for e in raw if e.get("cat") == "kernel" and keep(e["name"])
               and lo <= e["ts"] and e["ts"] + e["dur"] <= hi) / len(steps)


@pytest.mark.parametrize("name,cls", [
    ("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NTT", "gemm"),
    ("nvjet_sm90_tst_192x192_64x4_2x1_v_bz_coopB_bias_TNN", "gemm"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26_64x64x128_1x4x1_"
     "cga1x1x1_kernel0_0", "attention"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x128x128_4x1x1_"
     "cga1x1x1_kernel0_0", "attention"),
    ("void cudnn::fusion::compute_dot_do_o_specialized<true, 128>(void const*, void const*, "
     "void*, void*, unsigned int)", "attention"),
    ("void cudnn::fusion::convert_dq_to_16bits<true>(void const*, void*, unsigned int)",
     "attention"),
    # TorchInductor kernels from the same GPT step under torch.compile (H100, torch 2.11)
    ("triton_poi_fused_gelu_view_2", "elementwise"),
    ("triton_red_fused_native_dropout_backward_sum_view_3", "elementwise"),
    ("triton_per_fused_native_dropout_backward_sum_view_4", "elementwise"),
    ("triton_red_fused__unsafe_view_add_clone_permute_select_backward_5", "elementwise"),
])
def test_real_hopper_kernel_names(name, cls):
    assert classify(name) == cls


def test_every_kernel_classified(trace, raw):
    names = {e["name"] for e in raw if e.get("cat") == "kernel"}
    assert not [n for n in names if classify(n) == "other"]
    assert "other" not in trace.kernels and not trace.warnings


def test_ops_launched_before_the_window_are_not_missing_links(trace, raw):
    # The GPU still ran the warmup step when recording began: those ops' launches (lower
    # CUPTI correlation ids than the first recorded call) are not in the trace at all.
    first = min(e["args"]["correlation"] for e in raw
                if e.get("cat") in ("cuda_runtime", "cuda_driver"))
    gpu = [e for e in raw if e.get("cat") in ("kernel", "gpu_memset", "gpu_memcpy")]
    early = [e for e in gpu if e["args"]["correlation"] < first]
    assert len(early) == 686 and trace.before_trace == {0: 686}
    assert not any("correlation" in w for w in trace.warnings)


def test_steps_are_the_gpu_work_and_replay_within_3pct(trace, raw):
    steps = _gpu_steps(raw)
    assert trace.step_basis == "gpu"
    assert [s.measured_s for s in trace.steps] == pytest.approx(
        [e["dur"] * 1e-6 for e in steps], rel=1e-6)
    r = replay(trace)
    mean = sum(e["dur"] for e in steps) * 1e-6 / len(steps)
    assert r.measured_iteration_s == pytest.approx(mean, rel=1e-6)
    assert abs(r.replay_error) < 0.03
    # The profiled step is within the profiler's overhead of the unprofiled CUDA-event step.
    assert r.measured_iteration_s == pytest.approx(CUDA_EVENT_STEP_S, rel=0.02)
    assert not r.cpu_bound


def test_kernel_time_per_step_by_hand(trace, raw):
    r = replay(trace)
    gemm = _per_step_us(raw, lambda n: n.startswith("nvjet_"))
    attn = _per_step_us(raw, lambda n: "sdpa" in n or "cudnn::fusion::" in n)
    assert r.replayed.kernels["gemm"] == pytest.approx(gemm * 1e-6, rel=1e-6)
    assert r.replayed.kernels["attention"] == pytest.approx(attn * 1e-6, rel=1e-6)
    assert 0.040 < r.replayed.kernels["gemm"] < 0.050


def test_h100_to_a100_slows_gemms_by_model_ratio(h100_to_a100):
    r = h100_to_a100
    ratio = r.whatif.kernels["gemm"] / r.replayed.kernels["gemm"]
    bound = model_slope("dgx-a100", "gemm") / model_slope("dgx-h100", "gemm")   # ~2.9
    # Long GEMMs move by the peak x efficiency ratio; launch terms pull it slightly lower.
    assert 0.97 * bound < ratio <= bound + 1e-9
    # GPU-paced: the step grows by the device's busy-time growth.
    grow = sum(r.whatif.kernels.values()) - sum(r.replayed.kernels.values())
    assert r.whatif.iteration_s - r.replayed.iteration_s == pytest.approx(grow, rel=0.05)
    assert not r.whatif_unmoved
