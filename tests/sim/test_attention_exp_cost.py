"""The graph's attention ops reach the compute model's exponential floor through sim.costs."""

from __future__ import annotations

import pytest

from hw_models import catalog
from hw_models.compute import ComputeModel
from hw_models.profile import load_builtin
from sim.costs import OpCosts
from workloads.graph import Compute


def _ideal_gb200() -> ComputeModel:
    """GB200 at 100% of its tensor peak for attention, no launch cost."""
    base = load_builtin("h100")
    prof = base.model_copy(update={
        "attention": {k: v.model_copy(update={"eff_max": 1.0, "seq_half": 0.0})
                      for k, v in base.attention.items()},
        "memory": base.memory.model_copy(update={"launch_us": 0.0})})
    return ComputeModel(catalog.gpu("gb200"), prof)


def test_op_costs_pass_the_exp_count_to_the_model():
    """sim.costs prices a graph's attention op with its ``flops_per_exp``: on an ideal GB200
    a d = 64 forward op costs its exponentials, not its tensor time."""
    op = Compute("attention", 1e15, 0.0, "bf16", (64, 8192, 8192, 64), causal=True,
                 name="flash_attn_fwd", flops_per_exp=4 * 64)
    costs = OpCosts(_ideal_gb200(), network=None)
    assert costs.op_time(op) == pytest.approx(1e15 / 256 / 4.8e12, rel=1e-9)
