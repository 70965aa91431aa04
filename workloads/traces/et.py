"""Reader of PyTorch Execution Traces (``ExecutionTraceObserver`` JSON, ``.json``/``.json.gz``).

An ET lists every operator the process ran, with its parent (``ctrl_deps`` in schema
1.1.x, ``parent`` in 1.0.x), the record-function id (``rf_id``, the same number Kineto
writes as ``Record function id``), its thread, and its inputs and outputs: values (a tensor
is ``[tensor_id, storage_id, offset, numel, elem_bytes, device]``), shapes and types. It
has no durations. Two layouts exist and both are read here:

- 1.0.x: flat keys ``parent``, ``rf_id``, ``tid``, ``inputs``, ``input_shapes``,
  ``input_types`` (and ``outputs``/``output_*``);
- 1.1.x (``1.1.1-chakra.0.0.4``): ``ctrl_deps``, ``inputs: {values, shapes, types}`` and the
  scalar attributes as an ``attrs`` list of ``{name, type, value}``.

Nodes are read into small ``EtOp`` records; malformed files raise ClusterSimError.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hw_models.errors import ClusterSimError
from workloads.traces.events import open_text

# Bookkeeping nodes the observer writes around the real ops.
PROCESS_NODE = "[pytorch|profiler|execution_trace|process]"
THREAD_NODE = "[pytorch|profiler|execution_trace|thread]"


@dataclass(frozen=True, slots=True)
class Arg:
    """One input or output: ``value`` as recorded, ``shape`` and ``type`` strings."""
    value: object
    shape: object
    type: str

    @property
    def is_tensor(self) -> bool:
        return self.type.startswith("Tensor(") and isinstance(self.value, list) \
            and len(self.value) >= 5

    @property
    def tensor_id(self) -> int | None:
        return self.value[0] if self.is_tensor and isinstance(self.value[0], int) else None

    @property
    def nbytes(self) -> float:
        """Bytes of the tensor as this op sees it: shape x element size (0 if not a tensor)."""
        if not self.is_tensor or not isinstance(self.shape, list):
            return 0.0
        n = 1
        for d in self.shape:
            if not isinstance(d, int):
                return 0.0
            n *= d
        elem = self.value[4]
        return float(n * elem) if isinstance(elem, int) else 0.0


@dataclass(slots=True)
class EtOp:
    id: int
    name: str
    parent: int
    rf_id: int
    tid: int
    inputs: list[Arg]
    outputs: list[Arg]
    children: list[EtOp] = field(default_factory=list)


@dataclass
class EtFile:
    path: Path
    schema: str
    pid: int
    ops: dict[int, EtOp]
    roots: list[EtOp]        # ops right under a thread node, per thread in id order
    rank: int | None = None  # from distributed metadata where recorded


def looks_like_et(obj: object) -> bool:
    return isinstance(obj, dict) and "nodes" in obj and "schema" in obj


def read_json(path: Path) -> object:
    with open_text(path) as f:
        try:
            return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ClusterSimError(f"trace {path.name}: not valid JSON (truncated or corrupt?): "
                                  f"{exc}") from None
        except (OSError, EOFError) as exc:
            raise ClusterSimError(f"trace {path.name}: cannot read ({exc})") from None


def load(path: str | Path, data: object | None = None) -> EtFile:
    """Parse an ET file (or its already decoded JSON ``data``)."""
    path = Path(path)
    data = read_json(path) if data is None else data
    if not looks_like_et(data):
        raise ClusterSimError(f"trace {path.name}: not a PyTorch Execution Trace (expected a JSON "
                              "object with 'schema' and 'nodes')")
    nodes = data["nodes"]
    if not isinstance(nodes, list) or not nodes:
        raise ClusterSimError(f"execution trace {path.name}: 'nodes' must be a non-empty list")
    ops = {}
    for i, raw in enumerate(nodes):
        op = _op(raw, path, i)
        ops[op.id] = op
    roots = _tree(ops)
    rank = _rank(data)
    pid = data.get("pid", 0)
    return EtFile(path, str(data.get("schema", "")), pid if isinstance(pid, int) else 0, ops,
                  roots, rank)


def _rank(data: dict) -> int | None:
    """Rank from the ET's distributed metadata (``distributedInfo.rank`` in recent torch)."""
    info = data.get("distributedInfo") or data.get("distributed")
    rank = info.get("rank") if isinstance(info, dict) else None
    return rank if isinstance(rank, int) and rank >= 0 else None


def _op(raw: object, path: Path, i: int) -> EtOp:
    if not isinstance(raw, dict):
        raise ClusterSimError(f"execution trace {path.name}: node #{i} is not an object")
    attrs = raw.get("attrs")
    flat = dict(raw)
    if isinstance(attrs, list):  # schema 1.1.x: scalar attributes as a list
        flat.update({a["name"]: a.get("value") for a in attrs
                     if isinstance(a, dict) and isinstance(a.get("name"), str)})
    parent = flat.get("ctrl_deps", flat.get("parent"))
    missing = [k for k, v in (("id", flat.get("id")), ("name", flat.get("name")),
                              ("ctrl_deps/parent", parent)) if v is None]
    if missing:
        raise ClusterSimError(f"execution trace {path.name}: node #{i} lacks "
                              f"{', '.join(missing)}")
    if not isinstance(flat["id"], int) or not isinstance(parent, int):
        raise ClusterSimError(f"execution trace {path.name}: node #{i} has a non-integer id or "
                              "parent")
    return EtOp(flat["id"], str(flat["name"]), parent, _int(flat.get("rf_id")),
                _int(flat.get("tid")), _args(flat, "inputs", path, i),
                _args(flat, "outputs", path, i))


def _int(x: object) -> int:
    return x if isinstance(x, int) else -1


def _args(flat: dict, key: str, path: Path, i: int) -> list[Arg]:
    io = flat.get(key, [])
    if isinstance(io, dict):  # 1.1.x: {values, shapes, types}
        values, shapes, types = io.get("values", []), io.get("shapes", []), io.get("types", [])
    else:                     # 1.0.x: inputs, input_shapes, input_types
        stem = key[:-1]
        values, shapes, types = io, flat.get(f"{stem}_shapes", []), flat.get(f"{stem}_types", [])
    if not all(isinstance(x, list) for x in (values, shapes, types)):
        raise ClusterSimError(f"execution trace {path.name}: node #{i} has malformed {key}")
    n = len(values)
    shapes = list(shapes) + [None] * (n - len(shapes))
    types = list(types) + [""] * (n - len(types))
    return [Arg(v, s, str(t)) for v, s, t in zip(values, shapes, types, strict=False)]


def _tree(ops: dict[int, EtOp]) -> list[EtOp]:
    """Link children to parents (in id order: ids are given at op start) and return the
    ops directly under a thread (or process) node, or whose parent is missing."""
    roots = []
    for op in sorted(ops.values(), key=lambda o: o.id):
        if op.name in (PROCESS_NODE, THREAD_NODE):
            continue
        parent = ops.get(op.parent)
        if parent is None or parent is op or parent.name in (PROCESS_NODE, THREAD_NODE):
            roots.append(op)
        else:
            parent.children.append(op)
    return roots
