"""A predicted nccl-tests sweep on the flow model: one row per message size, with the time,
algorithm and bus bandwidth NCCL's tuner would pick (``clustersim collective``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from hw_models import catalog
from hw_models.errors import ClusterSimError
from hw_models.profile import load as load_profile
from sim.network.analytical import ClusterLayout, bus_factor
from sim.network.flow import FlowNetwork
from sim.progress import progress
from workloads.graph import CommGroup

if TYPE_CHECKING:
    import pandas as pd

OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "reduce",
       "sendrecv")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """'8', '64K', '8G' (powers of 1024, as nccl-tests reads -b/-e)."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)B?\s*", str(text).upper())
    if not m or int(m.group(1)) <= 0:
        raise ClusterSimError(f"size {text!r} is not a positive byte count like 8, 64K, 8G")
    return int(m.group(1)) * _UNITS[m.group(2)]


# GPUs one `collective` sweep may span. Measured (2-core machine, DGX H100 nodes, 8 sizes):
# 2,048 GPUs 7.7 s / 0.3 GB, 16,384 GPUs 196 s / 5.0 GB, 65,536 GPUs > 300 s / > 13 GB.
MAX_GPUS = 16_384


def sweep(system: str, nodes: int, gpus: int | None, op: str, algo: str | None,
          proto: str | None, min_bytes: int, max_bytes: int, network: dict | None = None
          ) -> pd.DataFrame:
    """nccl-tests' table for ``op`` over ``gpus`` GPUs (default: all) of ``nodes`` nodes of
    ``system``, sizes doubling from ``min_bytes`` to ``max_bytes``; ``algo``/``proto`` force
    NCCL_ALGO/NCCL_PROTO, ``network`` overrides the scenario's network keys."""
    import pandas as pd
    if op not in OPS:
        raise ClusterSimError(f"unknown op {op!r}; allowed: {', '.join(OPS)}")
    if min_bytes > max_bytes:
        raise ClusterSimError(f"--min-bytes {min_bytes} is larger than --max-bytes {max_bytes}")
    sys = catalog.system(system)
    if nodes < 1:
        raise ClusterSimError(f"--nodes must be >= 1, got {nodes}")
    world = nodes * sys.gpus_per_node
    if world > MAX_GPUS:
        raise ClusterSimError(
            f"--nodes {nodes} is {world:,} GPUs; the flow model here prices up to {MAX_GPUS:,} "
            f"(it routes every pair of the ring/tree: ~3 min and 5 GB at 16k GPUs, more beyond); "
            "use fewer --nodes")
    n = world if gpus is None else gpus
    if not 1 <= n <= world:
        raise ClusterSimError(f"--gpus must be in 1..{world} for {nodes} node(s) of {system}")
    if op == "sendrecv" and n != 2:
        raise ClusterSimError("sendrecv runs between 2 GPUs: pass --gpus 2")
    cfg = dict(network or {}) | {k: v for k, v in (("algo", algo), ("proto", proto)) if v}
    net = FlowNetwork(ClusterLayout(sys, nodes, sys.nic_gbps),
                      load_profile(sys.default_profile), cfg)
    group = CommGroup(tuple(range(n)))
    rows, size = [], min_bytes
    bar = progress(total=(max_bytes // min_bytes).bit_length(), desc=f"{op} on {n} GPUs",
                   unit="size")
    while size <= max_bytes:
        bar.update()
        ch = net.choose(op, size, group)
        t = net.collective_time(op, size, group)
        algbw = size / t / 1e9 if t > 0 else 0.0
        rows.append({"size_bytes": size, "time_us": round(t * 1e6, 2),
                     "algbw_gb_s": round(algbw, 2),
                     "busbw_gb_s": round(algbw * busbw_factor(op, n), 2),
                     "algo": ch.algo, "proto": ch.proto})
        size *= 2
    bar.close()
    return pd.DataFrame(rows)


def busbw_factor(op: str, n: int) -> float:
    """nccl-tests PERFORMANCE.md (busbw_factors.csv); sendrecv: 1."""
    return 1.0 if op == "sendrecv" else bus_factor(op, n)
