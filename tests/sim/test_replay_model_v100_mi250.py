"""``replay --durations model`` on the MI250 and V100 traces, priced on their own GPUs'
catalog entries: one GEMM, one reduction and one device copy against a hand calculation
from the datasheet peak / bandwidth and the borrowed A100 profile constants, and the MI250
trace's priced share from its raw kernel list.

Traces: HolisticTraceAnalysis test data (MIT License, Copyright (c) Meta Platforms, Inc.
and affiliates), tests/data/traces/README.md."""

import gzip
import json
from pathlib import Path

import pytest

from hw_models.profile import load_builtin
from sim.replay import model_coverage, priced
from sim.whatif import Recoster, WhatIf, source_system_for
from workloads.graph import Compute
from workloads.traces.formats import load_trace

DATA = Path(__file__).parents[1] / "data" / "traces"
MI250 = DATA / "mi250_minitoy_train.json.gz"
US = 1e-6
A100 = load_builtin("a100")        # the profile both entries borrow (catalog source lines)


@pytest.fixture(scope="module")
def mi250():
    trace = load_trace(MI250)
    system = source_system_for(trace.devices, trace.device_memory_gb,
                               units=trace.device_units)[0]
    return trace, Recoster(WhatIf(source_system=system), trace.graph.world_size), system


def _node(trace, fragment):
    return next(n for n in trace.graph.nodes if isinstance(n.op, Compute)
                and fragment in (n.op.name or "") and priced(n))


def test_mi250_trace_is_priced_on_one_gcd(mi250):
    _, rec, system = mi250
    assert system == "mi250-8" and rec.src.gpu.sms == 104


def test_mi250_gemm_by_hand(mi250):
    """aten::mm(x[128, 5], w[5, 128]) in fp32 -> one Tensile kernel (Cijk_Ailk_Bjlk...):
    F = 2 m n k = 163,840 FLOPs. A100 fp16 curve (fp32 has none of its own): launch 6.17 us
    + (F + F_half) / (peak x eff_max), peak = 90.5 / 2 TFLOPS (FP32 matrix per GCD); the
    memory term (A + B + C = 70,656 B at 1.6384 TB/s) is 0.05 us and adds < 0.1%."""
    trace, rec, _ = mi250
    n = _node(trace, "Cijk_Ailk_Bjlk")
    assert (n.op.flops, n.op.bytes, n.op.dtype) == (2 * 128 * 128 * 5, 4 * (640 + 640 + 16384),
                                                    "fp32")
    c = A100.gemm["fp16"]
    hand = c.launch_us * US + (163_840 + c.flops_half) / (90.5e12 / 2 * c.eff_max)
    assert rec.price_compute(n.op, target=False) == pytest.approx(hand, rel=1e-3)
    # the fitted small-GEMM term (F_half, fitted at fp16) makes it slower than recorded
    assert rec.price_compute(n.op, target=False) > n.op.duration_s


def test_mi250_reduction_by_hand(mi250):
    """aten::sum(x[5, 128]) fp32 -> reduce_kernel: reads 2,560 B, writes at most as much:
    5,120 B at 1.6384 TB/s x bw_eff after the elementwise launch cost."""
    trace, rec, _ = mi250
    n = _node(trace, "reduce_kernel<128, 4")
    assert n.op.bytes == 2 * 5 * 128 * 4
    m = A100.memory_curve("elementwise")
    hand = m.launch_us * US + 5120 / (1.6384e12 * m.bw_eff)
    assert rec.price_compute(n.op, target=False) == pytest.approx(hand, rel=1e-9)


def test_mi250_priced_share_from_the_raw_kernels(mi250):
    """Unpriced: the two host-to-device copies (no PCIe model, correlation 117 and 123),
    the bias copy aten::addmm launches before its GEMM (direct_copy_kernel, 118: a copy
    kernel does not take the GEMM's work) and the fill of ones_like on a 0-d tensor (126:
    no input tensor with a shape). The other 12 device ops are priced."""
    trace, rec, _ = mi250
    events = json.load(gzip.open(MI250))["traceEvents"]
    device = [e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    total = sum(e["dur"] for e in device)
    left = sum(e["dur"] for e in device if e["args"]["correlation"] in (117, 118, 123, 126))
    assert len(device) == 16
    cov = model_coverage(trace, None, rec)
    assert cov["priced_share"] == pytest.approx((total - left) / total, rel=1e-9)
    assert {k["class"] for k in cov["unpriced_kernels"]} == {"memcpy", "elementwise"}


def test_v100_device_copy_by_hand():
    """v100_1rank (V100-SXM2-32GB): a Memcpy DtoD of 9,437,184 B reads and writes it, so
    2 x 9,437,184 B at 900 GB/s x bw_eff after the launch cost: 29.0 us (recorded 26.9 us
    on average over its 15 copies)."""
    trace = load_trace(DATA / "v100_1rank.json.gz")
    system = source_system_for(trace.devices, trace.device_memory_gb, units=trace.device_units)[0]
    rec = Recoster(WhatIf(source_system=system), trace.graph.world_size)
    assert system == "dgx-1-v100-32gb" and rec.src_dtype == "fp16"   # no bf16 on a V100
    copies = [n for n in trace.graph.nodes if isinstance(n.op, Compute)
              and n.op.name.startswith("Memcpy DtoD") and n.op.bytes == 2 * 9_437_184]
    m = A100.memory_curve("elementwise")
    hand = m.launch_us * US + 2 * 9_437_184 / (0.9e12 * m.bw_eff)
    assert len(copies) == 15 and hand == pytest.approx(29.0e-6, abs=0.1e-6)
    assert rec.price_compute(copies[0].op, target=False) == pytest.approx(hand, rel=1e-9)
    recorded = sum(n.op.duration_s for n in copies) / len(copies)
    assert abs(hand / recorded - 1) < 0.15


def test_cli_reports_coverage_in_json_and_table(mi250, monkeypatch, capsys):
    from tests.sim.hardening_helpers import cli
    trace, rec, _ = mi250
    code, out, _ = cli(monkeypatch, capsys, "replay", MI250, "--durations", "model",
                       "--format", "json")
    cov = json.loads(out)["model_coverage"]
    assert code == 0 and cov["priced_share"] == pytest.approx(
        model_coverage(trace, None, rec)["priced_share"])
    assert cov["unpriced_kernels"][0]["name"].startswith("Memcpy HtoD")
    code, out, _ = cli(monkeypatch, capsys, "replay", MI250, "--durations", "model")
    assert code == 0 and "priced 68% of the recorded device time" in out
    assert "unpriced memcpy: Memcpy HtoD" in out
