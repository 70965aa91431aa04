"""Serving iterations of MoE / MLA / windowed models: the cached cost equals the engine on
the iteration graph, MLA caches its latent, a single decode reads only top-k experts."""

from __future__ import annotations

import pytest

from hw_models import catalog, profile
from hw_models.compute import ComputeModel
from sim.network import AnalyticalNetwork, ClusterLayout
from workloads.inference.moe_ops import MoEIterationModel
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
