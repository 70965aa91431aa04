"""Work of Execution Trace operators from their input and output shapes.

An ET records no durations, so each op becomes the work it does, and the compute and
network models price it:
- GEMM (``aten::mm/addmm/bmm/baddbmm/matmul/linear/_scaled_mm``, convolutions):
  ``2 * numel(out) * K`` FLOPs, K the contracted size (the last dim of the left operand;
  for a convolution the weight's ``C_in/groups * prod(kernel)``); shape ``(M, N, K)``.
- attention (``scaled_dot_product_attention`` and its flash/efficient kernels):
  ``4 * B * H * S_q * S_kv * D`` FLOPs (QK^T and PV, FlashAttention-2 paper, sec. 4),
  halved when causal; backward ``2.5x`` forward (FA2: 5 matmuls instead of 2).
- collectives (``c10d::*`` ops, ``record_param_comms``): kind from the op or its collective
  name argument, bytes from the tensors (nccl-tests' buffer size, as Collective expects).
- views and allocations (``view``, ``transpose``, ``empty``, ...): no work.
- any other leaf op: memory-bound, bytes read + written from its tensors' shapes.
An op of none of the first three kinds that has children is split into them, so composite
ops (``aten::layer_norm``, autograd functions) cost what their kernels cost.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from workloads.graph import Collective, CommGroup, Compute, Op
from workloads.traces.classify import collective_kind
from workloads.traces.et import Arg, EtOp

_GEMM = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul",
                   "aten::linear", "aten::_scaled_mm", "aten::addbmm"})
_CONV = re.compile(r"^aten::(_?convolution|conv\d?d|cudnn_convolution|mkldnn_convolution)")
_ATTN = re.compile(r"scaled_dot_product|flash_attention|efficient_attention|_fused_attention")
_COMM = re.compile(r"^(c10d::|record_param_comms$|c10d_functional::|_c10d_functional::)")
# Backend records of a collective a c10d op already issued (gloo/nccl worker threads).
_BACKEND_COMM = re.compile(r"^(gloo|nccl|ProcessGroup\w*):")
_NO_WORK = re.compile(
    r"^aten::(view|_?reshape|_unsafe_view|as_strided|t|transpose|permute|expand|expand_as|slice"
    r"|select|unsqueeze|squeeze|detach|alias|empty|empty_like|empty_strided|resolve_conj"
    r"|resolve_neg|contiguous|split|split_with_sizes|chunk|unbind|narrow|flatten|lift_fresh"
    r"|set_|resize_|item|_local_scalar_dense|numpy_T|unflatten|_has_compatible_shallow_copy_type"
    r"|is_nonzero|size|stride|result_type|broadcast_tensors|zeros_like|ones_like|new_empty"
    r"|new_empty_strided)(\.|$)|^detach$")
# Element type names in ET ``Tensor(...)`` types -> the compute model's dtype names.
_DTYPES = {"float": "fp32", "double": "fp32", "c10::BFloat16": "bf16", "c10::Half": "fp16",
           "c10::Float8_e4m3fn": "fp8", "c10::Float8_e5m2": "fp8"}
_COMM_KINDS = (("all_reduce", "all_reduce"), ("allreduce", "all_reduce"),
               ("allgather", "all_gather"), ("all_gather", "all_gather"),
               ("reduce_scatter", "reduce_scatter"), ("alltoall", "all_to_all"),
               ("all_to_all", "all_to_all"), ("broadcast", "broadcast"), ("reduce", "reduce"))
ATTN_BWD_FACTOR = 2.5


def kernels(op: EtOp, world: int) -> Iterator[tuple[EtOp, Op | None, str]]:
    """(ET op, graph op, category) of the work under ``op`` in program order; a graph op of
    None marks work-free ops (kept so data dependencies flow through them)."""
    name = op.name
    if _BACKEND_COMM.match(name):
        return
    if _COMM.match(name):
        coll = collective(op, world)
        if coll is not None:
            yield op, coll, "dp"
            return
    if name in _GEMM or _CONV.match(name):
        yield op, gemm(op), "compute"
        return
    if _ATTN.search(name):
        yield op, attention(op), "compute"
        return
    if op.children:
        for child in op.children:
            yield from kernels(child, world)
        return
    if _NO_WORK.match(name) or not name.startswith("aten::"):
        yield op, None, "other"
        return
    yield op, Compute("elementwise", bytes=_bytes(op), dtype=dtype(op), name=name), "compute"


def tensors(args: list[Arg]) -> list[Arg]:
    """Tensor arguments, with tensor lists (``GenericList[Tensor(...)]``) flattened."""
    out = []
    for a in args:
        if a.is_tensor:
            out.append(a)
        elif a.type.startswith("GenericList[Tensor") and isinstance(a.value, list):
            inner = re.sub(r"^GenericList\[|\]$", "", a.type).split(",")
            shapes = a.shape if isinstance(a.shape, list) else []
            out += [Arg(v, s, t) for v, s, t in zip(a.value, shapes, inner, strict=False)]
    return [t for t in out if t.is_tensor]


def _bytes(op: EtOp) -> float:
    return sum(t.nbytes for t in tensors(op.inputs)) + sum(t.nbytes for t in tensors(op.outputs))


def dtype(op: EtOp) -> str:
    for t in tensors(op.inputs) + tensors(op.outputs):
        inner = t.type[len("Tensor("):-1]
        if inner in _DTYPES:
            return _DTYPES[inner]
    return "fp32"


def _dims(a: Arg) -> list[int]:
    return [d for d in a.shape if isinstance(d, int)] if isinstance(a.shape, list) else []


def _numel(dims: list[int]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def gemm(op: EtOp) -> Compute:
    ins, outs = tensors(op.inputs), tensors(op.outputs)
    out = _dims(outs[0]) if outs else []
    k = 0
    if _CONV.match(op.name) and len(ins) >= 2:
        w = _dims(ins[1])      # (C_out, C_in/groups, kh, kw)
        k = _numel(w[1:]) if len(w) >= 2 else 0
    elif ins:
        left = ins[1] if op.name in ("aten::addmm", "aten::baddbmm", "aten::addbmm") \
            and len(ins) >= 3 else ins[0]
        dims = _dims(left)
        k = dims[-1] if dims else 0
    n = out[-1] if out else 0
    m = _numel(out[:-1]) if out else 0
    return Compute("gemm", flops=2.0 * m * n * k, bytes=_bytes(op), dtype=dtype(op),
                   shape=(m, n, k), name=op.name)


def attention(op: EtOp) -> Compute:
    ins = tensors(op.inputs)
    q = _dims(ins[0]) if ins else []
    kv = _dims(ins[1]) if len(ins) > 1 else q
    causal = any(a.type == "Bool" and a.value is True for a in op.inputs)
    if len(q) >= 4 and len(kv) >= 4:
        bh, s_q, d, s_kv = _numel(q[:-2]), q[-2], q[-1], kv[-2]
    else:
        bh, s_q, d, s_kv = 0, 0, 0, 0
    flops = 4.0 * bh * s_q * s_kv * d * (0.5 if causal else 1.0)
    if "backward" in op.name:
        flops *= ATTN_BWD_FACTOR
    return Compute("attention", flops=flops, bytes=_bytes(op), dtype=dtype(op),
                   shape=(bh, s_q, s_kv, d), causal=causal, name=op.name)


def collective(op: EtOp, world: int) -> Collective | None:
    """A Collective, or None where the op is point-to-point or of unknown kind (then its
    children, if any, are costed instead)."""
    kind = _comm_kind(op.name)
    if op.name == "record_param_comms" or kind is None:
        names = [a.value for a in op.inputs if isinstance(a.value, str)]
        kind = next((k for k in map(collective_kind, names) if k), None) or kind
    if kind is None:
        return None
    size = max((t.nbytes for t in tensors(op.inputs) + tensors(op.outputs)), default=0.0)
    if kind in ("all_gather", "reduce_scatter"):
        # nccl-tests counts the full (gathered) buffer: the largest single argument, a
        # tensor list summed (c10d passes the per-rank pieces as one list argument).
        size = max((sum(t.nbytes for t in tensors([a])) for a in op.inputs + op.outputs),
                   default=0.0)
    return Collective(kind, float(size), CommGroup(tuple(range(world)), "dp"), name=op.name)


def _comm_kind(name: str) -> str | None:
    key = name.lower().split("::")[-1]
    if "send" in key or "recv" in key or "barrier" in key:
        return None
    return next((kind for token, kind in _COMM_KINDS if token in key), None)
