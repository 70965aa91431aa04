"""Kernel classes from kernel names, and NCCL kernel names to collective kinds.

Names follow the libraries that emit them: cuBLAS/cuBLASLt (``gemm``, ``sm80_xmma``,
``cutlass``), rocBLAS/Tensile (``Cijk_``), cuDNN convolutions (implicit GEMM), flash
attention (``flash_fwd``, ``fmha``), NCCL/RCCL (``ncclKernel_AllReduce...``,
``ncclDevKernel_...``), and PyTorch's own memory-bound kernels (``at::native::...``).
A rule is a (class, regex) pair; the first that matches wins, so order matters.
"""

from __future__ import annotations

import re

KernelClass = str  # gemm | attention | nccl | elementwise | memcpy | other
CLASSES = ("gemm", "attention", "nccl", "elementwise", "memcpy", "other")

_RULES: tuple[tuple[str, re.Pattern], ...] = tuple((c, re.compile(p, re.I)) for c, p in (
    ("nccl", r"nccl|rccl"),
    ("attention", r"flash|fmha|attention|sdpa|mha_|_mha"),
    ("gemm", r"gemm|xmma|cutlass|cublas|Cijk_|s884|s1688|h1688|s16816|h16816|wgrad|dgrad"
             r"|conv|implicit_?convolve|winograd|fft|splitk|bmm|matmul"),
    ("memcpy", r"memcpy|memset|copy_kernel|CatArray"),
    ("elementwise", r"elementwise|vectorized|reduce|norm|softmax|bn_|Functor|adam|sgd"
                    r"|multi_tensor|index|scatter|gather|embedding|dropout|gelu|relu|silu"
                    r"|loss|pool|fill|transpose|permute|cat_|sort|topk|cumsum|at::native"
                    r"|nchwToNhwc|nhwcToNchw|cub::|Offsets"),
))

_NCCL_KINDS = (("allreduce", "all_reduce"), ("allgather", "all_gather"),
               ("reducescatter", "reduce_scatter"), ("alltoall", "all_to_all"),
               ("sendrecv", "all_to_all"), ("broadcast", "broadcast"), ("reduce", "reduce"))


def classify(name: str) -> KernelClass:
    for cls, pattern in _RULES:
        if pattern.search(name):
            return cls
    return "other"


def collective_kind(name: str) -> str | None:
    """Collective kind from an NCCL kernel name or a ``Collective name`` argument;
    None where it is point-to-point or unknown."""
    key = re.sub(r"[^a-z]", "", name.lower())
    for token, kind in _NCCL_KINDS:
        if token in key:
            return kind
    return None
