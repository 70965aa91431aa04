"""The routed-expert kernels of a serving iteration against vLLM's published fused_moe
kernel times (calibration/reference/inference/vllm_fused_moe_kernel.csv)."""

import pandas as pd
import pytest

from sim import scenario
from sim.network import AnalyticalNetwork
from sim.serving.moe_iteration import MoEIterationModel
from sim.setup import paced_compute, resolve_cluster
from tests.paths import ROOT
from workloads.model import resolve

DATA = ROOT / "calibration" / "reference" / "inference" / "vllm_fused_moe_kernel.csv"
# What benchmark_moe.py times: the top-k softmax, the block alignment (two kernels with
# 128 experts), both expert GEMMs, the activation and the top-k sum.
FUSED = ("router_topk", "moe_align", "moe_sort", "expert_up", "expert_activation",
         "expert_down", "moe_sum")


def fused_moe_us(system: str, batch: int) -> float:
    sc = scenario.parse({"cluster": {"system": system, "nodes": 1}, "workload": {
        "kind": "inference", "model": "qwen3-30b-a3b", "precision": "bf16"}})
    cl = resolve_cluster(sc)
    it = MoEIterationModel(resolve("qwen3-30b-a3b"), 1, 1, "bf16",
                           paced_compute(cl.gpu, cl.profile, 1.0, 1),
                           AnalyticalNetwork(cl.layout, cl.profile))
    ops = [o for o in it.token_ops(batch, True, batch, compute=True) if o.name in FUSED]
    assert len(ops) == len(FUSED)
    return 1e6 * sum(it._costs.op_time(o) for o in ops)


@pytest.mark.parametrize("batch", [8, 16, 24, 32, 48, 64, 96])
def test_fused_moe_matches_vllm_default_config_on_a100(batch):
    # Qwen3-30B-A3B's experts at TP 1 on an A100 40GB (azure-nd-a100-v4: A100 40GB SXM4,
    # the same 1,555 GB/s as the PCIe card measured). From 8 tokens on, a batch touches
    # 40-100% of the 128 experts and the kernel streams their weights: the model is within
    # 9% of the published times (4.9-8.7% slow). Below 8 tokens it is 5-12% fast; not
    # asserted.
    df = pd.read_csv(DATA, comment="#")
    row = df[(df.source_id == "VLLM-19049") & (df.batch == batch)].iloc[0]
    assert fused_moe_us("azure-nd-a100-v4", batch) == pytest.approx(row.kernel_us, rel=0.09)
