"""Work of a traced kernel from the shapes of the CPU op that launched it.

A Kineto trace recorded with ``record_shapes=True`` gives every CPU op (``aten::mm``,
``aten::add_``...) its ``Input Dims`` and ``Input type``. A kernel is linked to the
innermost shaped CPU op that was open on the launching thread when its launch (the
runtime call with the same correlation id) ran. From the op and its shapes:
- GEMMs (mm, addmm, bmm, baddbmm): FLOPs 2 m n k (per batch), bytes of A, B and C;
  where the op launched several kernels (a split-K GEMM and its reduction, cuBLAS's
  separate epilogue), the work is shared among them, as a memory-bound op's bytes are;
- convolutions: not priced (the output size needs stride and padding, which the trace
  does not record): the kernel stays unpriced;
- any other op with tensor inputs: memory-bound, its input bytes read plus the largest
  input written once (elementwise ops, copies, norms, optimizer steps); ops that only
  write their first input (``fill_``, ``zero_``, ``copy_``'s destination) do not read it.
The work is what the replay's model-only mode (``--durations model``) prices.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from workloads.traces.classify import classify
from workloads.traces.events import CPU_OP, GPU_KINDS, RUNTIME, Event

# ``Input type`` strings (c10 scalar type names) -> (bytes per element, dtype of the model).
TYPES = {"float": (4, "fp32"), "c10::half": (2, "fp16"), "c10::bfloat16": (2, "bf16"),
         "double": (8, "fp32"), "long int": (8, "fp32"), "int": (4, "fp32"),
         "bool": (1, "fp32"), "unsigned char": (1, "fp32"), "signed char": (1, "fp32"),
         "c10::float8_e4m3fn": (1, "fp8"), "c10::float8_e5m2": (1, "fp8")}
UNPRICED = ("conv", "cudnn_convolution", "miopen")
# In-place ops whose first input is only written: fill_(self, value), zero_(self),
# copy_(self, src) (PyTorch's native_functions.yaml signatures).
WRITE_ONLY_FIRST = ("aten::fill_", "aten::zero_", "aten::copy_")


@dataclass(frozen=True)
class Work:
    op_class: str          # gemm | elementwise
    flops: float
    bytes: float
    dtype: str
    op: str                # the aten op it came from


def launch_ops(events: Iterable[Event]) -> dict[int, tuple[str, list, list, int]]:
    """Correlation id -> (op name, input dims, input types, launches of that op) of the
    innermost shaped ``aten::`` op open on the launching thread at the launch. Other ops
    (a torch.compile region, custom ops) are containers whose inputs say nothing about
    one kernel: their kernels stay unpriced.

    The launches of an op that share its work are its device ops that take that kind of
    work (``share_group``): an ``aten::addmm``'s GEMM kernel does not share its FLOPs with
    the bias copy the op launches first. Runtime calls that started no device op
    (``hipGetLastError`` and the like carry correlation ids too) are not launches."""
    events = events if isinstance(events, list) else list(events)
    on_device = {e.corr: share_group(e.name) for e in events
                 if e.kind in GPU_KINDS and e.corr >= 0}
    per_thread: dict[tuple, list[Event]] = {}
    for e in events:
        if (e.kind == CPU_OP and e.extra and "dims" in e.extra) or (
                e.kind == RUNTIME and e.corr in on_device):
            per_thread.setdefault((str(e.pid), str(e.tid)), []).append(e)  # any JSON value
    owner: dict[int, Event] = {}
    for evs in per_thread.values():
        # CPU ops before the launches they contain at the same timestamp; outer ops first
        evs.sort(key=lambda e: (e.ts, e.kind != CPU_OP, -e.dur))
        stack: list[Event] = []
        for e in evs:
            while stack and stack[-1].ts + stack[-1].dur < e.ts:
                stack.pop()
            if e.kind == CPU_OP:
                stack.append(e)
            elif stack and stack[-1].name.startswith("aten::"):
                owner[e.corr] = stack[-1]
    launches: dict[tuple[int, str | None], int] = {}
    for c, op in owner.items():
        key = (id(op), on_device[c])
        launches[key] = launches.get(key, 0) + 1
    return {c: (op.name, op.extra["dims"], op.extra.get("types") or [],
                launches[(id(op), on_device[c])]) for c, op in owner.items()}


def share_group(kernel: str) -> str | None:
    """Which work of its launching op a device op can take (the importer's rule,
    workloads/traces/kineto.py): a GEMM kernel the GEMM's FLOPs, an elementwise or
    unclassified kernel a memory-bound op's bytes; copies, collectives and attention
    kernels none."""
    cls = classify(kernel)
    return "gemm" if cls == "gemm" else "memory" if cls in ("elementwise", "other") else None


def _numel(dims) -> int:
    return math.prod(int(d) for d in dims) if dims else 1


def _tensors(dims: list, types: list) -> list[tuple[int, int, str]]:
    """(numel, bytes per element, dtype) of every tensor input (tensor lists flattened)."""
    out = []
    for i, d in enumerate(dims):
        t = str(types[i]).lower() if i < len(types) else ""
        if isinstance(d, list) and d and all(isinstance(x, list) for x in d):   # TensorList
            out += [(_numel(x), *TYPES.get(t, (4, "fp32"))) for x in d]
        elif isinstance(d, list) and d and t in TYPES:
            out.append((_numel(d), *TYPES[t]))
    return out


def _gemm(name: str, dims: list) -> tuple[float, float] | None:
    """(batch * m * n * k, elements of A + B + C) of a GEMM op, None if not one."""
    op = name.removeprefix("aten::")
    try:
        if op == "mm":
            (m, k), (_, n) = dims[0], dims[1]
            b = 1
        elif op == "addmm":
            (m, k), (_, n) = dims[1], dims[2]
            b = 1
        elif op == "bmm":
            (b, m, k), (_, _, n) = dims[0], dims[1]
        elif op == "baddbmm":
            (b, m, k), (_, _, n) = dims[1], dims[2]
        else:
            return None
    except (TypeError, ValueError, IndexError):
        return None
    return b * m * n * k, b * (m * k + k * n + m * n)


def work_of(name: str, dims: list, types: list, launches: int = 1) -> Work | None:
    """The priced work of one kernel launched by CPU op ``name`` (an op that launches
    several memory-bound kernels, a multi-tensor optimizer step say, shares its bytes among
    them); None where unknown, or where the recorded shapes are not lists of integers."""
    try:
        return _work(str(name), dims, types or [], launches)
    except (TypeError, ValueError, OverflowError):
        return None


def _work(name: str, dims: list, types: list, launches: int) -> Work | None:
    if any(u in name for u in UNPRICED) or not isinstance(dims, list):
        return None
    tensors = _tensors(dims, types)
    if not tensors:
        return None
    elem, dtype = tensors[0][1], tensors[0][2]
    g = _gemm(name, dims)
    if g is not None:
        mnk, elems = g
        return Work("gemm", 2.0 * mnk / max(1, launches), float(elems * elem) / max(1, launches),
                    dtype, name)
    nbytes = sum(n * e for n, e, _ in tensors) + max(n * e for n, e, _ in tensors)
    if name in WRITE_ONLY_FIRST:      # the destination is written, not read
        nbytes -= tensors[0][0] * tensors[0][1]
    return Work("elementwise", 0.0, float(nbytes) / max(1, launches), dtype, name)
