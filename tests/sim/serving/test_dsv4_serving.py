"""Serving iterations of DeepSeek-V4: the cached cost equals the engine on the iteration
graph (with pipeline stages, and with expert parallelism and two-batch overlap)."""

from __future__ import annotations

import pytest

from hw_models import catalog, profile
from hw_models.compute import ComputeModel
from sim.network import AnalyticalNetwork, ClusterLayout
from sim.serving.dsv4_iteration import DSV4IterationModel
from workloads.inference.ops import Shape, bucketed
from workloads.model import resolve


def model(tp=1, pp=1, nodes=1, **moe):
    s = catalog.system("dgx-h100")
    prof = profile.load(s.gpu_spec.profile)
    net = AnalyticalNetwork(ClusterLayout(s, nodes, s.nic_gbps), prof)
    return DSV4IterationModel(resolve("deepseek-v4-flash"), tp, pp, "fp8",
                              ComputeModel(s.gpu_spec, prof), net, **moe)


@pytest.mark.parametrize(("tp", "pp", "moe"), [(8, 2, {}), (1, 1, {"ep": 16, "dispatcher": "deepep",
                                                                    "overlap": True})])
def test_composed_time_equals_engine(tp, pp, moe):
    it = model(tp, pp, nodes=2, **moe)
    s = bucketed(Shape(4096, 4096 * 4097 // 2, 4096, 64, 64 * 2000, 66))
    assert it.time(s) == pytest.approx(it.run_graph(s), rel=1e-6)


def test_pipeline_stage_holds_its_layers_cache():
    """pp 2: the first stage's ceil(43 / 2) = 22 layers at the model's mean per layer."""
    one, two = model(8, 1), model(8, 2)
    assert two.kv_bytes_per_token() == pytest.approx(one.kv_bytes_per_token() * 22 / 43)
