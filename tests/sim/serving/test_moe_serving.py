"""Serving iterations of MoE / MLA / windowed models: the cached cost equals the engine on
the iteration graph, MLA caches its latent, a single decode reads only top-k experts."""

from __future__ import annotations

import pytest

from hw_models import catalog, profile
from hw_models.compute import ComputeModel
from sim.network import AnalyticalNetwork, ClusterLayout
from sim.serving.moe_iteration import MoEIterationModel
from workloads.inference.ops import Shape, bucketed
from workloads.model import resolve


def model(name, tp=1, pp=1, precision="fp16", nodes=1):
    s = catalog.system("dgx-h100")
    prof = profile.load(s.gpu_spec.profile)
    net = AnalyticalNetwork(ClusterLayout(s, nodes, s.nic_gbps), prof)
    return MoEIterationModel(resolve(name), tp, pp, precision, ComputeModel(s.gpu_spec, prof), net)


@pytest.mark.parametrize(("name", "tp", "pp"), [("mixtral-8x7b", 2, 2), ("gpt-oss-20b", 1, 1),
                                               ("deepseek-v3", 8, 2)])
def test_composed_time_equals_engine(name, tp, pp):
    it = model(name, tp, pp, "fp8", nodes=2)
    s = bucketed(Shape(300, 300 * 301 // 2 + 300 * 700, 1000, 24, 24 * 1500, 25))
    assert it.time(s) == pytest.approx(it.run_graph(s), rel=1e-6)


def test_mla_caches_the_latent():
    """DeepSeek-V3, pp 2: ceil(61/2) = 31 layers x (512 + 64) latent x 1 byte (fp8)."""
    assert model("deepseek-v3", 8, 2, "fp8").kv_bytes_per_token() == 31 * 576 * 1


def test_one_decode_token_reads_top_k_experts():
    """Mixtral 8x7B, one token, top-2 of 8: the up projection reads 2 experts' weights
    (2 x 4096 x 2 x 14336 x 2 bytes), not 8."""
    it = model("mixtral-8x7b")
    up = next(o for o in it.token_ops(1, moe=True) if o.name == "expert_up")
    weights = 2 * 4096 * 2 * 14336 * 2.0
    assert up.bytes == pytest.approx(weights + 2.0 * 1 * 2 * (4096 + 2 * 14336))
    assert up.flops == 2.0 * 2 * 4096 * 2 * 14336
    many = next(o for o in it.token_ops(4096, moe=True) if o.name == "expert_up")
    assert many.bytes > 3.9 * weights             # a large batch touches all 8 experts


def test_window_layers_read_at_most_the_window():
    it = model("gpt-oss-20b")
    s = Shape(decode_seqs=4, decode_kv=4 * 3000, logits=4)
    full, window = (it.attention_ops_of(s, w)[0] for w in (False, True))
    assert window.flops == pytest.approx(full.flops * 128 / 3000)


@pytest.mark.parametrize(("dispatcher", "overlap"), [("alltoall", False), ("deepep", True)])
def test_expert_parallel_serving_equals_engine(dispatcher, overlap):
    """Attention data-parallel over EP 16 on 2 nodes: the cached cost still equals the
    engine on the iteration graph, overlap included."""
    s = catalog.system("dgx-h100")
    prof = profile.load(s.gpu_spec.profile)
    net = AnalyticalNetwork(ClusterLayout(s, 2, s.nic_gbps), prof)
    it = MoEIterationModel(resolve("deepseek-v3"), 1, 1, "fp8", ComputeModel(s.gpu_spec, prof), net,
                           ep=16, dispatcher=dispatcher, overlap=overlap)
    shape = bucketed(Shape(4096, 4096 * 4097 // 2, 4096, 64, 64 * 2000, 66))
    assert it.time(shape) == pytest.approx(it.run_graph(shape), rel=1e-6)
    # each GPU holds 1/16 of the routed experts and its share of the KV cache
    one = model("deepseek-v3", 1, 1, "fp8")
    assert it.kv_bytes_per_token() == pytest.approx(one.kv_bytes_per_token() / 16)
    assert it.weight_bytes_per_gpu() < one.weight_bytes_per_gpu() / 10


def test_serving_ep_needs_a_moe_model(tmp_path):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "sim.cli.main", "simulate",
                          "examples/inference_llama3_70b.yaml", "--set", "workload.parallel.ep=2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "parallel.ep=2 needs a mixture-of-experts model" in out.stderr


def test_two_batch_overlap_runs_every_kernel_once_per_half(monkeypatch):
    """Two-batch overlap: the iteration is two half batches, each with its kernels and its
    exposed DeepEP time; a decode step reads its weights twice. (DeepEP's transfers at
    their standalone rate beside compute: the stages price that slowdown per stage, the
    one-batch iteration over its whole compute.)"""
    import sim.costs
    from sim.serving.moe_iteration import MoEIterationModel
    monkeypatch.setattr(sim.costs, "overlap_rate_frac", lambda: 1.0)
    from workloads.inference.moe_ops import split

    class OneBatch(MoEIterationModel):
        micro_batches = 1

    s = catalog.system("dgx-h100")
    prof = profile.load(s.default_profile)
    net = AnalyticalNetwork(ClusterLayout(s, 2, s.nic_gbps), prof)
    kw = dict(ep=16, dispatcher="deepep", overlap=True, dispatch_dtype="fp8")
    args = (resolve("deepseek-v3"), 1, 1, "fp8", ComputeModel(s.gpu_spec, prof), net)
    two, one = MoEIterationModel(*args, **kw), OneBatch(*args, **kw)
    for shape in (Shape(0, 0, 0, 128 * 16, 128 * 16 * 2000, 128 * 16),
                  Shape(4096 * 16, 4096 * 16 * 2048, 4096, 0, 0, 16)):
        assert two.micro_batches == 2
        assert two.time(shape) == pytest.approx(2 * one.time(split(shape, 2)), rel=1e-12)
