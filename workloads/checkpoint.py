"""Checkpoint size and save/load cost, and storage I/O as ExecutionGraph nodes.

Size (ZeRO, Rajbhandari et al. SC'20 section 3.1: mixed-precision Adam keeps 2 bytes of
fp16/bf16 weights, then K = 12 bytes of fp32 master weights, momentum and variance per
parameter; gradients are not saved): 2 + 4 + 4 + 4 = 14 bytes/param.

Who writes: without optimizer sharding one data-parallel replica (its tp x pp x cp ranks)
holds a whole copy and writes it (Megatron-LM); with ZeRO-1+/FSDP/distributed-optimizer
sharding every rank owns a slice and all of them write. Loads are done by every node
(SC'21 section 5.9: "all 384 nodes" read the 1T checkpoint).

Save modes: ``sync`` blocks training for the whole write. ``async`` blocks only for the
snapshot GPU -> host memory over the host link, then writes in the background while
training goes on (as PyTorch DCP async_save, Megatron async checkpointing); the checkpoint
counts only once the background write has finished.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from hw_models.dtypes import DTYPE_BYTES
from hw_models.errors import ClusterSimError
from hw_models.storage import HostLink, StoragePath, StorageTier
from workloads.graph import ExecutionGraph, Memory
from workloads.model import ModelSpec

# Adam: fp32 momentum + fp32 variance (ZeRO section 3.1, K = 12 with the fp32 master copy).
OPTIMIZER_STATES = {"adam": 2, "sgd_momentum": 1, "none": 0}
Mode = Literal["sync", "async"]


@dataclass(frozen=True)
class CheckpointSize:
    params: int
    weights_bytes: float      # training-dtype copy of the weights
    master_bytes: float       # fp32 master weights (mixed precision)
    optimizer_bytes: float    # optimizer moments, fp32

    @property
    def total(self) -> float:
        return self.weights_bytes + self.master_bytes + self.optimizer_bytes

    @property
    def bytes_per_param(self) -> float:
        return self.total / self.params


def checkpoint_size(model: ModelSpec, weight_dtype: str = "bf16", master_fp32: bool = True,
                    optimizer: str = "adam") -> CheckpointSize:
    if weight_dtype not in DTYPE_BYTES:
        raise ClusterSimError(f"checkpoint weight dtype {weight_dtype!r}; allowed: {sorted(DTYPE_BYTES)}")
    if optimizer not in OPTIMIZER_STATES:
        raise ClusterSimError(f"checkpoint optimizer {optimizer!r}; allowed: {sorted(OPTIMIZER_STATES)}")
    p = model.params
    master = 4 * p if master_fp32 and DTYPE_BYTES[weight_dtype] < 4 else 0
    return CheckpointSize(p, DTYPE_BYTES[weight_dtype] * p, master,
                          OPTIMIZER_STATES[optimizer] * 4 * p)


@dataclass(frozen=True)
class CheckpointCost:
    """Seconds: ``blocking_s`` stops training per save; ``write_s`` is the storage write
    (equal to blocking_s for sync, in the background for async); ``load_s`` at restart."""
    size_bytes: float
    writer_gpus: int
    writer_nodes: int
    mode: Mode
    blocking_s: float
    write_s: float
    load_s: float


def writers(gpus: int, model_parallel: int, sharded: bool) -> int:
    """GPUs that write: all with a sharded optimizer, else one replica's model-parallel ranks."""
    if model_parallel < 1 or gpus % model_parallel:
        raise ClusterSimError(f"model-parallel size {model_parallel} must divide the {gpus} GPUs")
    return gpus if sharded else model_parallel


def checkpoint_cost(size_bytes: float, tier: StorageTier, *, gpus: int, gpus_per_node: int,
                    model_parallel: int = 1, sharded: bool = False, mode: Mode = "sync",
                    host: HostLink | None = None, path: StoragePath | None = None) -> CheckpointCost:
    """Closed form: write = latency + size / min(writer_nodes x per-client, aggregate, fabric
    to storage (``path``: writer_nodes x node NICs, storage uplinks)); load the same with
    every node reading; async snapshot = (size / writer GPUs) / host link."""
    w_gpus = writers(gpus, model_parallel, sharded)
    w_nodes = math.ceil(w_gpus / gpus_per_node)
    write = tier.transfer_time("write", size_bytes, w_nodes, path)
    load = tier.transfer_time("read", size_bytes, math.ceil(gpus / gpus_per_node), path)
    if mode == "sync":
        blocking = write
    elif host is None:
        raise ClusterSimError("async checkpointing needs the GPU's host link (catalog host_links)")
    else:
        blocking = size_bytes / w_gpus / host.bw            # every writer copies its shard at once
    return CheckpointCost(size_bytes, w_gpus, w_nodes, mode, blocking, write, load)


def storage_io(graph: ExecutionGraph, rank: int, direction: Literal["read", "write"],
               nbytes: float, tier_name: str, tier: StorageTier, clients: int,
               deps: tuple[int, ...] = (), path: StoragePath | None = None) -> int:
    """Add one storage transfer as a Memory node (stream ``storage``, category ``memory``).
    ``duration_s`` is the analytical time so today's engine plays it; ``meta`` keeps tier and
    clients so a flow-level network can instead route it over the fabric and share links."""
    op = Memory(f"storage_{direction}", nbytes,
                duration_s=tier.transfer_time(direction, nbytes, clients, path), name=f"ckpt_{direction}")
    return graph.add(rank, "storage", op, deps, category="memory", tier=tier_name, clients=clients)
