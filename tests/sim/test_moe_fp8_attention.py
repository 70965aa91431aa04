"""``workload.fp8.dot_product_attention``: the step grows by exactly the extra backward
work of the windowed layers (every causal pair instead of the window), nothing else."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hw_models import catalog, profile
from sim.scenario import parse
from sim.setup import paced_compute
from sim.simulate import simulate
from workloads.graph import CommGroup
from workloads.layer_attention import fused_attention
from workloads.layers import LayerContext
from workloads.model import presets
from workloads.moe import is_window_layer


def _scenario(dpa: bool) -> dict:
    return {"name": "gpt-oss-20b fp8 attention",
            "cluster": {"system": "dgx-b200", "nodes": 1},
            "workload": {"kind": "training", "model": "gpt-oss-20b", "seq_len": 4096,
                         "global_batch": 16, "micro_batch": 1, "precision": "fp8",
                         "fp8": {"recipe": "mxfp8", "dot_product_attention": dpa},
                         "parallel": {"tp": 1, "pp": 1, "ep": 8, "zero": 1}},
            "sim": {"check_memory": False}}


def test_step_grows_by_the_windowed_layers_full_backward():
    base = simulate(parse(_scenario(False), "a"), band=False).iteration_time_s
    fp8 = simulate(parse(_scenario(True), "b"), band=False).iteration_time_s
    model = presets()["gpt-oss-20b"]
    system = catalog.system("dgx-b200")
    cm = paced_compute(system.gpu_spec, profile.load(system.default_profile), 1.0, 8)
    ctx = LayerContext(model, 1, 1, False, "bf16", CommGroup((0,)), "flash")

    def bwd(c):
        op = fused_attention(c, True, 64, 64, True)
        return cm.time(op.op_class, op.flops, op.bytes, op.dtype, op.shape[2], op.causal, op.shape)
    windowed = sum(is_window_layer(model, i) for i in range(model.layers))
    microbatches = 16 // 8
    extra = windowed * microbatches * (bwd(replace(ctx, fp8_attention=True)) - bwd(ctx))
    assert windowed == 12 and extra > 0
    assert fp8 - base == pytest.approx(extra, rel=1e-6)


def test_fp8_attention_needs_precision_fp8():
    sc = _scenario(True)
    sc["workload"]["precision"] = "bf16"
    with pytest.raises(Exception, match="workload.fp8 is set but precision"):
        simulate(parse(sc, "c"), band=False)
