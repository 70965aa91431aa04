"""NCCL's own cost model, used only to pick (algorithm, protocol) the way NCCL does.

NCCL runs whichever enabled pair its model says is fastest (src/graph/tuning.cc,
ncclTopoTuneModel + ncclTopoGetAlgoTime); that model is coarse (e.g. it rates a 2-node
tree below the ring at large sizes although the tree moves less data across nodes), so
the pick can differ from what our flow model would call fastest. The simulator must run
what NCCL runs, so the choice uses NCCL's model; the chosen pair's time then comes from
the topology and the profile's fitted curves (tuner.py). All constants and formulas are
in nccl_tuning.yaml with their source.

``graph_bw`` stands for NCCL's nChannels x bw of the searched graph: the scale-up bus
bandwidth for up to two nodes (NCCL uses bwIntra there) as NCCL rates NVLink (links x
its per-link figure, ``nvlink_rating``), else the ring's bus bandwidth across the NICs;
``channels`` is that over NCCL's bandwidth per channel (``nchannels``).
"""

from __future__ import annotations

import math
import re
from functools import cache
from typing import Any

from hw_models.yamlio import read_packaged


@cache
def constants() -> dict[str, Any]:
    return read_packaged("sim.network.collectives", "nccl_tuning.yaml")


def arch_key(arch: str | None) -> str:
    """tuning.cc's compCap index: >= 90 Hopper row, >= 80 Ampere, else Volta; parts with
    no sm number (AMD, CPU) get the Ampere row (RCCL keeps its own tables)."""
    m = re.fullmatch(r"sm(\d+)", arch or "")
    cc = int(m.group(1)) if m else 80
    return "sm90" if cc >= 90 else "sm80" if cc >= 80 else "sm70"


def _nvlink_key(arch: str | None) -> str:
    """Row of the per-link NVLink tables: arch_key's, plus SM100 of its own."""
    m = re.fullmatch(r"sm(\d+)", arch or "")
    return "sm100" if m and int(m.group(1)) >= 100 else arch_key(arch)


def tree_latency_us(proto: str, local: int, nodes: int) -> float:
    """NCCL's latency of a tree all_reduce across ``nodes`` nodes of ``local`` ranks each with
    ``proto`` (tuning.cc, on its constants): base + 2 ((local - 1) NVLink hops + log2(nodes)
    network hops), up to the root and back down."""
    c = constants()
    hw = c["hw_latency_us"]["tree"]
    return (c["base_latency_us"]["tree"][proto] + 2 * (local - 1) * hw["nvlink"][proto]
            + 2 * math.log2(nodes) * hw["network"][proto])


def nchannels(arch: str | None, graph_bw: float, nodes: int, local: int) -> float:
    """NCCL's channel count: graph bandwidth / per-link NVLink figure up to two nodes,
    one per rail (local rank) beyond (nccl_tuning.yaml nvlink_channel_gb_s)."""
    if nodes > 2:
        return float(max(1, local))
    return max(1.0, graph_bw / (constants()["nvlink_channel_gb_s"][_nvlink_key(arch)] * 1e9))


def nvlink_rating(arch: str | None) -> float:
    """NCCL's per-link NVLink bandwidth over the marketed per-link rate (SM80: 20 / 25):
    the factor between the scale-up bandwidth and the graph bandwidth NCCL's model
    uses inside an NVLink domain; 1 for parts with no sm number (AMD, CPU)."""
    if not re.fullmatch(r"sm\d+", arch or ""):
        return 1.0
    c, key = constants(), _nvlink_key(arch)
    return c["nvlink_channel_gb_s"][key] / c["nvlink_link_gb_s"][key]


def _node_idx(nodes: int) -> int:
    return 0 if nodes <= 1 else 1 if nodes == 2 else 2


def protocol_factor(key: str, proto: str, kind: str, nodes: int, ppn: float) -> float:
    """Bus-bandwidth factor of a protocol on an algorithm (before NCCL's absolute caps)."""
    f = constants()["protocol_factor"]
    if key == "ring":
        if proto == "LL":
            single_other = nodes <= 1 and kind not in ("all_reduce", "reduce")
            return f["ring"]["LL_single_node_other" if single_other else "LL"]
        if proto == "LL128":
            return f["ring"]["LL128_ppn1" if ppn < 2 else "LL128"]
        return f["ring"]["Simple"]
    if key == "tree":
        t = f["tree"]
        if proto == "LL128":
            return t["all"] * t["LL128_single_node" if nodes <= 1 else "LL128"]
        return t["all"] * t[proto]
    return 1.0


def bus_bw_cap(key: str, proto: str, nodes: int, arch: str, channels: float) -> float:
    """NCCL's absolute bus-bandwidth cap for the pair, bytes/s (inf where it has none)."""
    c, i = constants(), _node_idx(nodes)
    per_ch = c["per_channel_max_gb_s"]
    caps = []
    if proto == "LL" and key in ("ring", "tree"):
        caps.append(c["ll_max_bw_gb_s"][arch][i])
    if key == "ring" and proto == "LL128":
        caps.append(channels * per_ch["ring_LL128"][arch][i])
    if key == "tree":
        caps.append(channels * per_ch["tree"][arch][i] * protocol_factor(key, proto, "", nodes, 8)
                    / c["protocol_factor"]["tree"]["all"])
        if proto == "LL128":
            caps.append(channels * per_ch["tree_LL128"][arch][i])
    return min(caps) * 1e9 if caps else math.inf


def algbw_ratio(key: str, kind: str, n: int, per_rank: float) -> float:
    r = constants()["algbw_ratio"]
    if key == "ring":
        return 1.0 / per_rank          # n / nsteps
    return r.get(key, r["other"])


def tree_correction(proto: str, nbytes: float) -> float:
    log_size = int(math.log2(max(1.0, nbytes / 64))) if nbytes >= 64 else 0
    table = constants()["tree_correction"][proto]
    return table[log_size] if log_size < len(table) else 1.0


def nccl_time(key: str, proto: str, kind: str, nbytes: float, latency_us: float, graph_bw: float,
              n: int, nodes: int, per_rank: float, arch: str, channels: float) -> float:
    """NCCL's predicted time (seconds) of one (algorithm, protocol) pair."""
    ppn = n / max(1, nodes)
    bus = min(graph_bw * protocol_factor(key, proto, kind, nodes, ppn),
              bus_bw_cap(key, proto, nodes, arch, channels))
    alg = bus * algbw_ratio(key, kind, n, per_rank)
    if key == "tree":
        alg *= tree_correction(proto, nbytes)
    lat = latency_us
    if (key == "ring" and proto == "Simple" and nodes > 1 and kind == "all_reduce"
            and nbytes / (channels * n) >= 64):
        lat *= constants()["ring_plateau"][arch]
    return lat * 1e-6 + nbytes / alg


def nvls_chunk_bytes(nbytes: float, heads: int, channels: int | None = None) -> int:
    """NCCL's NVLS chunk for one all_reduce of ``nbytes`` on one node of ``heads`` GPUs
    (src/enqueue.cc computeColl, v2.18-v2.19; ladder in nccl_tuning.yaml nvls_kernel)."""
    k = constants()["nvls_kernel"]
    ops = (channels or k["channels"]) * heads
    chunk = int(k["max_chunk_bytes"])
    for mult, smaller in k["chunk_ladder"]:
        if nbytes < mult * ops * chunk and chunk > smaller:
            chunk = int(smaller)
    return chunk


def nvls_loop_bytes(nbytes: float, heads: int, channels: int | None = None) -> int:
    """Bytes one NVLS loop moves: nChannels x nHeads x chunk."""
    ch = channels or constants()["nvls_kernel"]["channels"]
    return ch * heads * nvls_chunk_bytes(nbytes, heads, ch)


def nvls_loops(nbytes: float, heads: int, channels: int | None = None) -> int:
    """Loops of the NVLS kernel for a buffer of ``nbytes``: ceil(bytes / loop bytes)."""
    return max(1, math.ceil(nbytes / nvls_loop_bytes(nbytes, heads, channels)))


def nvls_warps(heads: int) -> dict[str, int]:
    """Warps per NVLS channel by role (single node, unregistered buffers;
    src/device/all_reduce.h, v2.18-v2.19)."""
    k = constants()["nvls_kernel"]
    w = k["reduce_warps"]
    reduce = w["small"] if heads <= w["small_max_ranks"] else w["large"]
    total = k["total_warps"]
    return {"reduce": reduce, "scatter": (total - reduce + 1) // 2,
            "gather": (total - reduce) // 2}


def _search_speed(speeds: list[float], path_bw: float, total_bw: float,
                  max_channels: int) -> tuple[int, float]:
    """(search channels, per-channel GB/s) of NCCL's ring search (src/graph/search.cc
    ncclTopoCompute, pass 1) for a GPU whose path carries ``path_bw`` and whose links
    ``total_bw`` GB/s, up to ``max_channels``: from the first speed no faster than the
    path, the solution of most channels x speed (ties: the first found), stepping down
    while the next speed is above 0.49 of the best's; stops at a solution using all
    ``total_bw``."""
    i = next((k for k, s in enumerate(speeds) if s <= path_bw), len(speeds) - 1)
    best_n, best_s = 0, 0.0
    while True:
        s = speeds[i]
        n = min(max_channels, int(total_bw / s + 1e-9))
        if n * s > best_n * best_s:
            best_n, best_s = n, s
        if best_n and best_n * best_s >= total_bw:
            break
        if i + 1 >= len(speeds) or (best_n and speeds[i + 1] / best_s <= 0.49):
            break
        i += 1
    return max(1, best_n), best_s


def ring_ctas(arch: str | None, nvlink_gb_s: float, local: int, nodes: int,
              nic_gb_s: float = 0.0) -> int:
    """CTAs (SMs) a ring/tree collective kernel holds: NCCL's execution channels
    (nccl_tuning.yaml ``ring_ctas``). One NVLink domain (``nodes`` 1): the search over
    the GPU's NVLink bandwidth as NCCL rates it (``nvlink_gb_s`` marketed per GPU, times
    ``nvlink_rating``); across nodes the same search over the inter-node speeds, from the
    first one a NIC (``nic_gb_s``) carries, with at most one channel per rail of the
    ``local`` ranks per node. Then ncclTopoDupChannels and connect.cc's doublings. 0 for parts
    with no sm number (RCCL keeps its own channel logic)."""
    m = re.fullmatch(r"sm(\d+)", arch or "")
    if not m:
        return 0
    cc = int(m.group(1))
    key = "sm100" if cc >= 100 else "sm90" if cc >= 90 else "sm80"
    c = constants()["ring_ctas"]
    total = nvlink_gb_s * nvlink_rating(arch)
    if nodes <= 1:
        n, s = _search_speed(c["speed_intra"][key], total, total, c["max_search_channels"])
    else:       # at most one ring per rail, each crossing every GPU's NVLink once
        n, s = _search_speed(c["speed_inter"][key], nic_gb_s, total,
                             min(max(1, local), c["max_search_channels"]))
    if s >= 25.0 and not (cc > 80 and s < 50.0 and n > 4):     # ncclTopoDupChannels
        n, s = min(2 * n, c["max_search_channels"]), s / 2
    n = min(c["max_channels"], 2 * n)                            # connect.cc: x2
    if cc >= 90 and nodes > 1 and s > 45.0 and n < 16:           # 4 per search channel
        n = min(c["max_channels"], 2 * n)
    return n
