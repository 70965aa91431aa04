"""Kernel classes from kernel names, and NCCL kernel names to collective kinds.

Names follow the libraries that emit them: cuBLAS/cuBLASLt (``gemm``, ``sm80_xmma``,
``cutlass``), rocBLAS/Tensile (``Cijk_``), cuDNN convolutions (implicit GEMM), flash
attention (``flash_fwd``, ``fmha``), cuDNN's fused attention (SDPA) on Hopper, cuBLAS's
``nvjet`` GEMMs (CUDA 12.6+/13 on sm90+, see the rules below), NCCL/RCCL (``ncclKernel_AllReduce...``,
``ncclDevKernel_...``), and PyTorch's own memory-bound kernels (``at::native::...``).
A rule is a (class, regex) pair; the first that matches wins, so order matters.
"""

from __future__ import annotations

import re

KernelClass = str  # gemm | attention | nccl | elementwise | memcpy | other
CLASSES = ("gemm", "attention", "nccl", "elementwise", "memcpy", "other")

_RULES: tuple[tuple[str, re.Pattern], ...] = tuple((c, re.compile(p, re.I)) for c, p in (
    ("nccl", r"nccl|rccl"),
    # cuDNN's SDPA backend (torch's CUDNN_ATTENTION): its fprop/bprop kernels are named
    # ``cudnn_generated_fort_native_sdpa_sm90_flash_{f,b}prop_wgmma...`` (matched by
    # ``sdpa``/``flash``), and its backward's helpers ``cudnn::fusion::compute_dot_do_o_*``
    # (rowsum(dO*O), the softmax-gradient term) and ``cudnn::fusion::convert_dq_to_16bits``
    # (dQ fp32 accumulator -> bf16) live in the same fusion namespace; before this rule the
    # latter fell to 'gemm' through "conv". Names from a torch 2.11 H100 trace
    # (tests/data/traces/h100_gpt_1p3b_s4k.json.gz).
    ("attention", r"flash|fmha|attention|sdpa|mha_|_mha|cudnn::fusion::(compute_dot_do_o"
                  r"|convert_dq)"),
    # ``nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NTT``: cuBLAS's JIT-generated GEMM
    # kernels (cuBLAS 12.6+ / 13 on Hopper and Blackwell pick them instead of the
    # sm90_xmma/cutlass kernels; tile MxN_KxStages, cluster, NT layout suffix).
    # TorchInductor (torch.compile) names its Triton kernels by kind: ``triton_tem_*`` are
    # GEMM templates, ``triton_poi_*`` pointwise, ``triton_red_*``/``triton_per_*``
    # (persistent) reductions, e.g. ``triton_red_fused_sum_15`` (a compiled H100 GPT step).
    ("gemm", r"triton_tem_|nvjet|gemm|xmma|cutlass|cublas|Cijk_|s884|s1688|h1688|s16816|h16816|wgrad|dgrad"
             r"|conv|implicit_?convolve|winograd|fft|splitk|bmm|matmul"),
    ("memcpy", r"memcpy|memset|copy_kernel|CatArray"),
    ("elementwise", r"triton_(poi|red|per)_|elementwise|vectorized|reduce|norm|softmax|bn_|Functor|adam|sgd"
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
