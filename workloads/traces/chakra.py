"""Chakra execution traces (protobuf) <-> ExecutionGraph.

A Chakra ET file is one rank: varint length-delimited protobuf messages, a GlobalMetadata
then Node messages (mlcommons/chakra ``et_def.proto``, the schema in chakra_schema.py).
Export writes ``<dir>/<prefix>.<rank>.et`` per rank with Chakra's own attributes
(``is_cpu_op``, ``num_ops`` = FLOPs, ``tensor_size`` = bytes, ``comm_type``, ``comm_size``,
``comm_src``/``comm_dst``/``comm_tag``, ``pg_name``) so other Chakra tools can read it,
and ``cs_*`` attributes that carry what Chakra has no field for (stream, category, op
class, dtype, shape, group, sequence number, exact duration in seconds), so that a
graph exported and imported again is the same graph. A Block is written as consecutive
nodes sharing a ``cs_block`` attribute and joined again on import. Control dependencies
are the stream predecessor, data dependencies all other edges.
"""

from __future__ import annotations

import re
from pathlib import Path

from hw_models.errors import ClusterSimError
from workloads.graph import (
    Block,
    Collective,
    Compute,
    Delay,
    ExecutionGraph,
    Memory,
    Node,
    SendRecv,
)
from workloads.traces import chakra_schema as S
from workloads.traces.chakra_read import read_rank
from workloads.traces.kineto import ImportedTrace, Step, kernel_summary

VERSION = "0.0.4"
_COMM = {"all_reduce": "ALL_REDUCE", "reduce": "REDUCE", "all_gather": "ALL_GATHER",
         "broadcast": "BROADCAST", "all_to_all": "ALL_TO_ALL", "reduce_scatter": "REDUCE_SCATTER"}
_MEM_LOAD = ("alloc", "h2d", "storage_read")


def export(graph: ExecutionGraph, folder: str | Path, prefix: str = "et",
           steps: list[Step] | tuple = ()) -> list[Path]:
    """Write one Chakra ET file per rank; returns the paths. ``steps`` (iteration markers of
    an imported trace) go into each rank's GlobalMetadata as ``cs_steps``."""
    m = S.messages()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prev_on_stream: dict[int, int] = {}
    last: dict[tuple[int, str], int] = {}
    for n in graph.nodes:
        key = (n.rank, n.stream)
        if key in last:
            prev_on_stream[n.id] = last[key]
        last[key] = n.id
    paths = []
    for rank in graph.ranks:
        meta = m.GlobalMetadata(version=VERSION, attr=[
            _attr("world_size", graph.world_size), _attr("rank", rank),
            _attr("schema", f"clustersim-chakra-{VERSION}")])
        if graph.simulated_ranks is not None:
            meta.attr.append(_attr("simulated_ranks", list(graph.simulated_ranks)))
        mine = [f"{s.name}|{s.start_node}|{s.end_node}|{s.measured_s!r}" for s in steps
                if s.rank == rank]
        if mine:
            a = m.AttributeProto(name="cs_steps")
            a.string_list.values.extend(mine)
            meta.attr.append(a)
        path = folder / f"{prefix}.{rank}.et"
        with open(path, "wb") as f:
            _write(f, meta)
            for n in graph.nodes:
                if n.rank == rank:
                    for msg in _nodes(m, n, prev_on_stream.get(n.id)):
                        _write(f, msg)
        paths.append(path)
    return paths


def _write(f, msg) -> None:
    data = msg.SerializeToString()
    f.write(S.encode_varint(len(data)))
    f.write(data)


def _attr(name: str, value):
    a = S.messages().AttributeProto(name=name)
    if isinstance(value, bool):
        a.bool_val = value
    elif isinstance(value, int):
        a.int64_val = value
    elif isinstance(value, float):
        a.double_val = value
    elif isinstance(value, str):
        a.string_val = value
    elif isinstance(value, list | tuple):
        a.int64_list.values.extend(int(v) for v in value)
    else:
        raise TypeError(name)
    return a


def _nodes(m, n: Node, prev: int | None) -> list:
    """Chakra nodes of one graph node (several for a Block)."""
    ctrl = [prev] if prev is not None and prev in n.deps else []
    data = [d for d in n.deps if d not in ctrl]
    common = [_attr("cs_rank", n.rank), _attr("cs_stream", n.stream),
              _attr("cs_category", n.category), _attr("is_cpu_op", n.stream.startswith("cpu:"))]
    common += [_attr(f"cs_meta_{k}", v) for k, v in n.meta.items()
               if isinstance(v, int | float | str) and not isinstance(v, bool)]
    if not isinstance(n.op, Block):
        node = m.Node(id=n.id, name=n.name, ctrl_deps=ctrl, data_deps=data)
        _fill(node, n.op)
        node.attr.extend(common)
        return [node]
    out = []
    for i, op in enumerate(n.op.ops):
        # Sub-node ids: the Block's id, then ids past every graph id (kept unique per file).
        node = m.Node(id=n.id if i == 0 else (n.id << 16) + i + (1 << 48), name=op.name or n.name,
                      ctrl_deps=ctrl if i == 0 else [out[-1].id], data_deps=data if i == 0 else [])
        _fill(node, op)
        node.attr.extend(common + [_attr("cs_block", n.id), _attr("cs_block_name", n.op.name),
                                   _attr("cs_node_name", n.name)])
        out.append(node)
    return out


def _fill(node, op) -> None:
    """Type, duration and attributes of one op."""
    dur = getattr(op, "duration_s", None)
    if dur is not None:
        node.duration_micros = max(0, round(dur * 1e6))
        node.attr.append(_attr("cs_duration_s", float(dur)))
    node.attr.append(_attr("cs_op", type(op).__name__.lower()))
    if isinstance(op, Compute | Delay):
        node.type = S.NODE_TYPES.index("COMP_NODE")
        if isinstance(op, Compute):
            node.attr.extend([_attr("num_ops", int(op.flops)), _attr("tensor_size", int(op.bytes)),
                              _attr("cs_flops", float(op.flops)), _attr("cs_bytes", float(op.bytes)),
                              _attr("cs_op_class", op.op_class), _attr("cs_dtype", op.dtype),
                              _attr("cs_causal", op.causal)])
            if op.flops_per_exp:
                node.attr.append(_attr("cs_flops_per_exp", float(op.flops_per_exp)))
            if op.shape is not None:
                node.attr.append(_attr("cs_shape", list(op.shape)))
    elif isinstance(op, Collective):
        node.type = S.NODE_TYPES.index("COMM_COLL_NODE")
        node.attr.extend([_attr("comm_type", S.COMM_TYPES.index(_COMM[op.kind])),
                          _attr("comm_size", int(op.bytes)), _attr("cs_bytes", float(op.bytes)),
                          _attr("cs_kind", op.kind), _attr("cs_group", list(op.group.ranks)),
                          _attr("cs_dim", op.group.dim), _attr("cs_seq", op.seq),
                          _attr("pg_name", op.group.dim)])
    elif isinstance(op, SendRecv):
        node.type = S.NODE_TYPES.index("COMM_SEND_NODE" if op.kind == "send" else "COMM_RECV_NODE")
        node.attr.extend([_attr("comm_size", int(op.bytes)), _attr("cs_bytes", float(op.bytes)),
                          _attr("comm_tag", op.tag),
                          _attr("comm_dst" if op.kind == "send" else "comm_src", op.peer)])
    elif isinstance(op, Memory):
        node.type = S.NODE_TYPES.index("MEM_LOAD_NODE" if op.kind in _MEM_LOAD else "MEM_STORE_NODE")
        node.attr.extend([_attr("tensor_size", int(op.bytes)), _attr("cs_bytes", float(op.bytes)),
                          _attr("cs_kind", op.kind)])
    node.attr.append(_attr("cs_name", op.name))


def load(path: str | Path) -> ImportedTrace:
    """Import a Chakra ET file or a folder of per-rank ``*.et`` files."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".et")
        if not files:
            raise ClusterSimError(f"folder {str(path)!r} holds no .et (Chakra) files")
    elif path.is_file():
        files = [path]
    else:
        raise ClusterSimError(f"trace {str(path)!r} does not exist")
    ranks = [read_rank(f, i) for i, f in enumerate(sorted(files, key=_rank_of_name))]
    world = max([r.world for r in ranks] + [max(r.rank for r in ranks) + 1])
    sim = ranks[0].simulated if ranks[0].ours else tuple(sorted(r.rank for r in ranks))
    graph = ExecutionGraph(world, simulated_ranks=sim,
                           meta={"source": "chakra", "files": [str(f) for f in files]})
    out = ImportedTrace(graph, [], {}, {r.rank: "chakra" for r in ranks},
                        files=[str(f) for f in files])
    for r in sorted(ranks, key=lambda r: r.rank):
        local, warnings = r.add_to(graph)
        out.warnings += warnings
        out.steps += [Step(r.rank, name, local[a], local[b], measured)
                      for name, a, b, measured in r.steps if a in local and b in local]
    out.steps.sort(key=lambda s: (s.name, s.rank))
    # Recorded step times survive the round trip; a graph without them has no measurement.
    out.measured = bool(out.steps) and all(s.measured_s == s.measured_s for s in out.steps)
    out.kernels = kernel_summary(graph)
    return out


def _rank_of_name(p: Path) -> tuple[int, str]:
    m = re.search(r"(\d+)\.et$", p.name)
    return (int(m.group(1)) if m else 0, p.name)



