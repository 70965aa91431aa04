"""Iteration costs against closed forms (roofline) and against the engine."""

import pytest

from hw_models import catalog, profile
from hw_models.compute import ComputeModel
from sim.network import AnalyticalNetwork, ClusterLayout
from sim.serving.iteration import IterationModel
from workloads.inference.ops import Shape, bucketed
from workloads.model import resolve


def model(name="llama2-7b", tp=1, pp=1, system="dgx-h100", precision="fp16"):
    s = catalog.system(system)
    gpu, prof = s.gpu_spec, profile.load(s.gpu_spec.profile)
    net = AnalyticalNetwork(ClusterLayout(s, 1, s.nic_gbps), prof)
    return IterationModel(resolve(name), tp, pp, precision, ComputeModel(gpu, prof), net), gpu, prof


def decode(ctx):
    return Shape(decode_seqs=1, decode_kv=ctx, logits=1)


def test_decode_of_one_request_is_memory_bound():
    it, gpu, prof = model()
    bw = gpu.hbm_bw * prof.memory.bw_eff
    ctx = 2048
    bytes_ = it.weight_bytes_per_gpu() + ctx * it.kv_bytes_per_token()
    t = it.time(decode(ctx))
    # weights + KV over the sustained bandwidth, plus per-kernel launch overheads (< 35%)
    assert bytes_ / bw <= t <= 1.35 * bytes_ / bw


def test_decode_grows_by_kv_bytes_over_bandwidth():
    """The paged decode kernel reads the cache at bw_eff L^n / (L^n + L_half^n) of the HBM
    bandwidth (engines.yaml flash_decode_paged; the floor does not grow with the context):
    going from 256 to 4096 cached tokens adds K and V bytes(4096) / eff(4096) -
    bytes(256) / eff(256) over the bandwidth."""
    it, gpu, prof = model()
    _, l_half, n = catalog.paged_decode_kernel()

    def kv_s(ctx):
        eff = prof.memory.bw_eff * ctx ** n / (ctx ** n + l_half ** n)
        return ctx * it.kv_bytes_per_token() / (gpu.hbm_bw * eff)
    dt = it.time(decode(4096)) - it.time(decode(256))
    assert dt == pytest.approx(kv_s(4096) - kv_s(256), rel=0.02)


def test_prefill_is_compute_bound_at_long_prompts():
    it, gpu, prof = model()
    def prefill(n):
        return it.time(Shape(n, n * (n + 1) // 2, n, 0, 0, 1))
    n = 8192
    m = it.model
    matmul_flops = 2 * n * m.layers * (m.hidden * m.qkv_out + m.hidden**2 + 3 * m.hidden * m.ffn)
    # FLOP roofline at the fitted best GEMM efficiency is a lower bound, and weights
    # (13 GB) take ~4.6 ms of bandwidth: far from this prefill's time
    t = prefill(n)
    assert t >= matmul_flops / (gpu.peak_flops("fp16") * prof.gemm_curve("fp16").eff_max)
    assert t > 20 * it.weight_bytes_per_gpu() / gpu.hbm_bw
    # linear GEMMs plus quadratic attention: doubling the prompt a bit more than doubles time
    assert 2.0 < prefill(8192) / prefill(4096) < 2.5


@pytest.mark.parametrize("tp,pp", [(1, 1), (2, 2)])
def test_composed_time_equals_engine_on_iteration_graph(tp, pp):
    it, _, _ = model("llama3-8b", tp, pp)
    s = bucketed(Shape(300, 300 * 301 // 2 + 300 * 700, 1000, 24, 24 * 1500, 25))
    assert it.time(s) == pytest.approx(it.run_graph(s), rel=1e-6)
