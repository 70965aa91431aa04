"""workload.kernels: eager prices each extra PyTorch kernel at the profile's per-kernel floor
plus its bytes: a hand-computed difference to fused, the engine agreeing, and the key."""

import pytest

from hw_models import catalog, profile
from hw_models.compute import ComputeModel
from hw_models.errors import ClusterSimError
from sim.network import AnalyticalNetwork, ClusterLayout
from sim.scenario import Scenario
from sim.serving.iteration import IterationModel
from sim.simulate_inference import simulate_inference
from workloads.inference.ops import Shape, bucketed
from workloads.model import ModelSpec, resolve

# The tiny layer of tests/workloads/test_eager_kernels.py (head_dim 64, 4 / 2 heads, SwiGLU 512)
TINY = ModelSpec(layers=1, hidden=256, heads=4, kv_heads=2, ffn_hidden=512, vocab=1000,
                 seq_len=128, activation="swiglu", norm="rmsnorm", bias=False, rope=True,
                 tied_embeddings=False, dropout=False)


def _it(model, kernels, tp=1, pp=1):
    s = catalog.system("dgx-h100")
    prof = profile.load(s.gpu_spec.profile)
    net = AnalyticalNetwork(ClusterLayout(s, 1, s.nic_gbps), prof)
    return IterationModel(model, tp, pp, "bf16", ComputeModel(s.gpu_spec, prof), net,
                          kernels=kernels), s.gpu_spec, prof


def test_eager_minus_fused_by_hand_one_token():
    eager, gpu, prof = _it(TINY, "eager")
    fused, _, _ = _it(TINY, "fused")
    s = Shape(decode_seqs=1, decode_kv=100, logits=1)
    # 30 pointwise kernels (26 rotary, 2 KV copies, silu, mul) at the base memory floor
    # replace 3 fused elementwise kernels (rotary, KV write, activation); bytes by hand
    # (tests/workloads/test_eager_kernels.py): 6032 + 3728 + 2 x 256 x 2 + 2048 + 3072
    # eager; 2 x 2 x 6 x 64 + 2 x 2 x 64 x 4 + 3 x 2 x 512 fused.
    base, ew = prof.memory, prof.memory_curve("elementwise")
    assert base.bw_eff == ew.bw_eff
    d_bytes = (6032 + 3728 + 1024 + 5120) - (1536 + 1024 + 3072)
    expect = (30 * base.launch_us - 3 * ew.launch_us) * 1e-6 + d_bytes / (gpu.hbm_bw * base.bw_eff)
    assert eager.time(s) - fused.time(s) == pytest.approx(expect, rel=1e-6)
    assert expect > 10e-6          # ~17 us per layer on an H100: a tenth of an 8B decode step's layer


@pytest.mark.parametrize("tp,pp", [(1, 1), (2, 2)])
def test_eager_composed_time_equals_engine_on_iteration_graph(tp, pp):
    it, _, _ = _it(resolve("llama3-8b"), "eager", tp, pp)
    s = bucketed(Shape(300, 300 * 301 // 2 + 300 * 700, 1000, 24, 24 * 1500, 25))
    assert it.time(s) == pytest.approx(it.run_graph(s), rel=1e-6)


def _scenario(model, kernels, tp=1):
    return Scenario(name="eager", cluster={"system": "dgx-h100", "nodes": 1},
                    workload={"kind": "inference", "model": model, "precision": "bf16",
                              "kernels": kernels, "parallel": {"tp": tp},
                              "requests": {"count": 4, "arrival": "burst", "prompt_len": 64,
                                           "output_len": 8}})


def test_eager_key_slows_a_serving_run_and_fused_is_the_default():
    fused = simulate_inference(_scenario("llama3-8b", "fused"))
    eager = simulate_inference(_scenario("llama3-8b", "eager"))
    assert Scenario(name="d", workload={"kind": "inference"}).workload.kernels == "fused"
    assert eager.requests.e2e_s.mean() > fused.requests.e2e_s.mean()


def test_eager_on_a_moe_model_is_refused_in_one_line():
    with pytest.raises(ClusterSimError, match="kernels: eager is modelled for dense models only"):
        simulate_inference(_scenario("mixtral-8x7b", "eager", tp=2))
