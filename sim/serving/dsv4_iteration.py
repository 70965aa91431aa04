"""The time of one serving iteration of a DeepSeek-V4 model: the operations of
workloads/inference/dsv4_ops.py priced per kind of layer (MoE or dense, compression
ratio) as sim/serving/moe_iteration.py prices MoE models."""

from __future__ import annotations

from sim.serving.moe_iteration import MoEIterationModel
from workloads.inference.dsv4_ops import DSV4IterationOps


class DSV4IterationModel(DSV4IterationOps, MoEIterationModel):
    """A replica of ep x tp x pp GPUs serving a model with ``attention: {kind: dsv4}``."""

    def __init__(self, model, tp: int, pp: int, precision: str, compute, network,
                 kv_bytes: int | None = None, **moe):
        MoEIterationModel.__init__(self, model, tp, pp, precision, compute, network, kv_bytes,
                                   **moe)
        self.setup_dsv4()
