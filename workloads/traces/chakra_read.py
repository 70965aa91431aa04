"""Reading one rank's Chakra ET file into graph nodes (used by workloads.traces.chakra).

Files written by clustersim carry ``cs_*`` attributes and come back exactly. Files from
other Chakra tools are mapped by node type: COMP_NODE -> Compute (``num_ops`` FLOPs,
``tensor_size`` bytes, ``duration_micros`` where > 0) on stream ``compute``; COMM_COLL_NODE
-> Collective (``comm_type``, ``comm_size``, the whole world as its group) on ``comm``;
COMM_SEND/RECV_NODE -> SendRecv (``comm_dst``/``comm_src``, ``comm_tag``); MEM_LOAD/STORE ->
Memory h2d/d2h. Chakra ids and dependencies may come in any order: nodes are added in a
topological order (file order among ready nodes); an edge to an id not in the file is
dropped with a warning; a cycle is an error.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hw_models.errors import ClusterSimError
from workloads.graph import (
    Block,
    Collective,
    CommGroup,
    Compute,
    Delay,
    ExecutionGraph,
    Memory,
    SendRecv,
)
from workloads.traces import chakra_schema as S

_KINDS = {"ALL_REDUCE": "all_reduce", "REDUCE": "reduce", "ALL_GATHER": "all_gather",
          "BROADCAST": "broadcast", "ALL_TO_ALL": "all_to_all", "REDUCE_SCATTER": "reduce_scatter",
          "REDUCE_SCATTER_BLOCK": "reduce_scatter", "GATHER": "all_gather",
          "SCATTER": "reduce_scatter"}


@dataclass
class RankData:
    path: Path
    rank: int
    world: int
    simulated: tuple[int, ...] | None
    nodes: list = field(default_factory=list)     # protobuf Node messages, file order
    steps: list[tuple[str, int, int, float]] = field(default_factory=list)
    ours: bool = False                              # written by clustersim (cs_* attributes)

    def add_to(self, graph: ExecutionGraph) -> tuple[dict[int, int], list[str]]:
        """Add this rank's nodes; returns (Chakra id -> graph id, warnings)."""
        return _add_rank(self, graph)


def attrs(msg) -> dict:
    out = {}
    for a in msg.attr:
        which = a.WhichOneof("value")
        if which is None:
            continue
        v = getattr(a, which)
        out[a.name] = list(v.values) if which.endswith("_list") else v
    return out


def read_rank(path: Path, index: int) -> RankData:
    m = S.messages()
    buf = path.read_bytes()
    err = S.decode_error()
    msgs, pos = [], 0
    while pos < len(buf):
        try:
            size, pos = S.decode_varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError(f"message of {size} bytes runs past the end of the file")
            msg = (m.GlobalMetadata if not msgs else m.Node)()
            msg.ParseFromString(buf[pos:pos + size])
        except (ValueError, err) as exc:
            raise ClusterSimError(f"Chakra trace {path.name}: corrupt or truncated at byte {pos} "
                                  f"({exc})") from None
        pos += size
        msgs.append(msg)
    if len(msgs) < 2:
        raise ClusterSimError(f"Chakra trace {path.name}: no nodes (expected a GlobalMetadata "
                              "message then Node messages)")
    meta = attrs(msgs[0])
    rank = meta.get("rank", attrs(msgs[1]).get("cs_rank", index))
    sim = meta.get("simulated_ranks")
    return RankData(path, int(rank), int(meta.get("world_size", 0)),
                    tuple(sim) if sim else None, msgs[1:], _steps(meta.get("cs_steps", [])),
                    str(meta.get("schema", "")).startswith("clustersim"))


def _steps(items: list[str]) -> list[tuple[str, int, int, float]]:
    out = []
    for s in items:
        parts = s.rsplit("|", 3)
        try:
            out.append((parts[0], int(parts[1]), int(parts[2]), float(parts[3])))
        except (ValueError, IndexError):
            continue  # a malformed marker only loses the step, not the graph
    return out


def _order(rd: RankData) -> list:
    """Nodes in a topological order over ctrl + data deps (file order among ready ones)."""
    by_id = {}
    for n in rd.nodes:
        if n.id in by_id:
            raise ClusterSimError(f"Chakra trace {rd.path.name}: node id {n.id} appears twice")
        by_id[n.id] = n
    indeg = {n.id: 0 for n in rd.nodes}
    users: dict[int, list[int]] = {}
    for n in rd.nodes:
        for d in {*n.ctrl_deps, *n.data_deps}:
            if d in by_id:
                indeg[n.id] += 1
                users.setdefault(d, []).append(n.id)
    pos = {n.id: i for i, n in enumerate(rd.nodes)}
    import heapq
    ready = [pos[i] for i, k in indeg.items() if k == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        n = rd.nodes[heapq.heappop(ready)]
        out.append(n)
        for u in users.get(n.id, ()):
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(ready, pos[u])
    if len(out) < len(rd.nodes):
        raise ClusterSimError(f"Chakra trace {rd.path.name}: {len(rd.nodes) - len(out)} nodes "
                              "form a dependency cycle")
    return out


def _add_rank(rd: RankData, graph: ExecutionGraph) -> tuple[dict[int, int], list[str]]:
    world = graph.world_size
    local: dict[int, int] = {}
    dangling, seq = 0, Counter()
    nodes = _order(rd)
    i = 0
    while i < len(nodes):
        n = nodes[i]
        a = attrs(n)
        group = [n]
        if "cs_block" in a:
            while i + len(group) < len(nodes) and attrs(nodes[i + len(group)]).get(
                    "cs_block") == a["cs_block"]:
                group.append(nodes[i + len(group)])
        deps = []
        for d in {*n.ctrl_deps, *n.data_deps}:
            if d in local:
                deps.append(local[d])
            else:
                dangling += 1
        ops = [_op(g, attrs(g), world, seq) for g in group]
        op = Block(tuple(ops), a.get("cs_block_name", "")) if "cs_block" in a else ops[0]
        name = a.get("cs_node_name", n.name) if "cs_block" in a else n.name
        meta = {k[len("cs_meta_"):]: v for k, v in a.items() if k.startswith("cs_meta_")}
        nid = graph.add(rd.rank, a.get("cs_stream", _stream(n)), op, sorted(deps),
                        category=a.get("cs_category", _category(n)), name=name, **meta)
        for g in group:
            local[g.id] = nid
        i += len(group)
    return local, [f"rank {rd.rank}: {dangling} dependencies on ids not in the file were "
                   "dropped"] if dangling else []


def _type(n) -> str:
    return S.NODE_TYPES[n.type] if 0 <= n.type < len(S.NODE_TYPES) else "INVALID_NODE"


def _stream(n) -> str:
    t = _type(n)
    return "comm" if t.startswith("COMM") else "memory" if t.startswith("MEM") else "compute"


def _category(n) -> str:
    t = _type(n)
    return "dp" if t.startswith("COMM") else "memory" if t.startswith("MEM") else "compute"


def _op(n, a: dict, world: int, seq: Counter):
    dur = a.get("cs_duration_s", n.duration_micros * 1e-6 if n.duration_micros else None)
    name = a.get("cs_name", n.name)
    kind = a.get("cs_op")
    t = _type(n)
    nbytes = float(a.get("cs_bytes", a.get("comm_size", a.get("tensor_size", 0))))
    if kind == "delay":
        return Delay(dur or 0.0, name)
    if t == "COMM_COLL_NODE":
        ck = S.COMM_TYPES[a["comm_type"]] if 0 <= a.get("comm_type", 0) < len(S.COMM_TYPES) \
            else "ALL_REDUCE"
        ranks = tuple(a.get("cs_group", range(world)))
        s = a.get("cs_seq", seq["coll"])
        seq["coll"] += 1
        return Collective(a.get("cs_kind", _KINDS.get(ck, "all_reduce")), nbytes,
                          CommGroup(ranks, a.get("cs_dim", "dp")), seq=s, duration_s=dur,
                          name=name)
    if t in ("COMM_SEND_NODE", "COMM_RECV_NODE"):
        send = t == "COMM_SEND_NODE"
        return SendRecv("send" if send else "recv", int(a.get("comm_dst" if send else "comm_src", 0)),
                        nbytes, int(a.get("comm_tag", 0)), dur, name)
    if t in ("MEM_LOAD_NODE", "MEM_STORE_NODE"):
        return Memory(a.get("cs_kind", "h2d" if t == "MEM_LOAD_NODE" else "d2h"), nbytes, dur, name)
    shape = a.get("cs_shape")
    return Compute(a.get("cs_op_class", "other"), float(a.get("cs_flops", a.get("num_ops", 0))),
                   nbytes, a.get("cs_dtype", "bf16"), tuple(shape) if shape else None,
                   a.get("cs_causal", True), dur, name, float(a.get("cs_flops_per_exp", 0.0)))
