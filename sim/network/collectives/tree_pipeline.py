"""How many chunks a tree all_reduce with LL pipelines per channel, and what store-and-
forward across the tree's network levels adds to its size term.

NCCL's tree (src/device/all_reduce.h ``runTreeSplit``) cuts each channel's share of the
buffer into chunks of one buffer step and sends them up the tree while the broadcast
threads send them back down. Each network hop is a proxy send of a whole step, posted once
all of the step's LL lines carry their flag (src/transport/net.cc): the next node forwards
a chunk only once it holds all of it. With k chunks per channel and H network hops on the
way (2 log2(nodes): up to the root and back), the last chunk leaves after (k + H - 1)
chunk-times where a stream would take k: H - 1 extra chunk-times, each the chunk's
transfer at the link's rate. At the sizes NCCL runs tree LL the channel count is trimmed
so that each channel holds about 512 threads x 8 B (4 KiB), below the 32 KiB chunk: one
chunk, so the whole per-channel share crosses every hop in turn and the size term is paid
H times. Constants with their source: nccl_tuning.yaml ``tree_pipeline``.

LL only: LL's network buffers sit in host memory (net.cc maps them without GPUDirect RDMA),
so the GPU writes each chunk across PCIe and the proxy polls it there, a per-hop chunk time
far above the wire's. With LL128 (buffers in GPU memory under GPUDirect RDMA) the same rule
fitted on the echo A100 logs drove LL128's plateau to its bound and made the 256 KiB-64 MiB
rows worse (docs/accuracy.md), so LL128 and Simple keep a streamed size term.
"""

from __future__ import annotations

import math

from sim.network.collectives import nccl_model

PIPELINED = frozenset({"LL"})


def _c() -> dict:
    return nccl_model.constants()["tree_pipeline"]


def network_hops(nodes: int) -> float:
    """Store-and-forward network hops of a chunk: up log2(nodes) levels and back down."""
    return 2 * math.log2(nodes) if nodes > 1 else 0.0


def channels(proto: str, nbytes: float, max_channels: int) -> int:
    """NCCL's channels at ``nbytes``: one less while the bytes are below channels x threads
    x the per-thread threshold (topoGetAlgoInfo), at least 1, at most ``max_channels``."""
    c = _c()
    per = c["threads"][proto] * c["thread_threshold_bytes"][proto]
    return max(1, min(max_channels, int(nbytes // per)))


def chunk_bytes(proto: str) -> float:
    """Data bytes of one chunk: one buffer step's data (calcCollChunking for the tree)."""
    c = _c()
    return c["buff_bytes"][proto] / c["steps"] * c["data_per_line"][proto]


def chunks(proto: str, nbytes: float, max_channels: int) -> int:
    """Chunks each channel pipelines: its share of the buffer over the chunk, at least 1."""
    return max(1, math.ceil(nbytes / channels(proto, nbytes, max_channels) / chunk_bytes(proto)))


def extra_chunk_times(proto: str, nbytes: float, nodes: int, max_channels: int) -> float:
    """(H - 1) / k: the store-and-forward extra of the tree's size term, as a multiple of
    the whole transfer at the link's rate (0 outside ``PIPELINED`` and inside one node)."""
    if proto not in PIPELINED or nodes < 2 or nbytes <= 0:
        return 0.0
    return (network_hops(nodes) - 1) / chunks(proto, nbytes, max_channels)


def runs_ll(nbytes: float, n: int, nodes: int, local: int, graph_bw: float,
            arch: str | None) -> bool:
    """Whether NCCL's own model (nccl_model.nccl_time, on its constants) rates the tree's LL
    above its LL128 for an all_reduce of ``nbytes`` over ``n`` ranks on ``nodes`` nodes
    (``local`` per node); ``graph_bw``: NCCL's nChannels x bw, bytes/s. For the analytical
    model, which picks no protocol: the flow tuner makes the same comparison among all pairs."""
    key = nccl_model.arch_key(arch)
    chans = nccl_model.nchannels(arch, graph_bw, nodes, local)

    def t(proto: str) -> float:
        return nccl_model.nccl_time("tree", proto, "all_reduce", nbytes,
                                    nccl_model.tree_latency_us(proto, local, nodes), graph_bw,
                                    n, nodes, 2 * (n - 1) / n, key, chans)
    return t("LL") <= t("LL128")
