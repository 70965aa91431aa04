"""What the host issues: kernel launches per op and host-device synchronizations.

Eager training (no CUDA graphs) launches every kernel from Python: PyTorch's dispatcher,
Transformer Engine's module code and ``cudaLaunchKernel`` run on the host for each op, and
a kernel cannot start before it has been issued. Where the GPU finishes kernels faster than
the host issues them, the GPU idles (sim/costs.py prices it). A host-device synchronization
(the host reads a value the GPU computes) drains the launch queue: the host cannot run
ahead across it, so the kernels after it are exposed to the host's pace.

Launches per op. The training graph's ops are the kernels of Megatron-Core with Transformer
Engine (workloads/layers.py, workloads/moe_layers.py): one op is one kernel of its fused
implementation (TE's fused norm, a cuBLAS GEMM, cuDNN's fused attention, Megatron's
fused bias-dropout-add and bias-SwiGLU jit kernels, TE's fused RoPE, an NCCL collective,
one GEMM per local expert as TE's GroupedLinear issues them, one cast kernel per FP8
input). Each is one host-issued op, except where the host issues more than one kernel
for what the graph holds as one op, counted from the code: ``Compute.host_ops`` (the
router's scoring and load-balancing-loss kernels, a current-scaling expert cast's three
kernels) or ``LAUNCHES`` by name.

CUDA graphs (Megatron-Core ``cuda_graph_impl`` / ``cuda_graph_scope``): the ops of a
captured scope are replayed as one graph launch, so their per-op host cost disappears;
``full_iteration`` captures the whole forward and backward (Megatron-Bridge's full-iteration
recipes, which need the sync-free MoE path, so no synchronization is left either).

Synchronizations. Megatron-Core's dropless token dispatchers read the tokens per expert on
the host once per MoE layer forward (megatron/core/transformer/moe/token_dispatcher.py):
the all-to-all dispatcher syncs ``before_ep_alltoall`` to size the all-to-all splits; the
all-gather dispatcher copies ``tokens_per_expert`` to the CPU (``.cpu()``); the flex
dispatcher (DeepEP, HybridEP) waits in its dispatch for the received counts unless a static
token budget is given (``num_permuted_tokens``: drop-and-pad or
``moe_expert_rank_capacity_factor``). The backward reuses the splits: no sync.
"""

from __future__ import annotations

from workloads.graph import Collective, Compute, Delay, Overlap

HOST_SYNC = "host_sync"
SCOPES = ("attn", "mlp", "moe", "moe_router", "moe_preprocess", "full_iteration")

# Op name prefixes of each CUDA-graph scope (Megatron-Core CudaGraphScope). ``attn``:
# TransformerLayer._forward_attention (input norm, attention, its output projection and
# TP collectives); ``mlp``: a dense layer's MLP; ``moe_router``: the router GEMM and top-k;
# ``moe_preprocess``: the dispatcher's preprocessing up to the sync (the token permutation,
# with cuda_dtoh_point before the all-to-all); ``moe``: the whole MoE block. Backward ops
# (``_dgrad``, ``_wgrad``, ``_bwd``) and FP8 casts (``<op>_<recipe>_cast_<tag>``) share
# their forward op's prefix; graphs capture both passes (TE make_graphed_callables).
_ROUTER = ("router",)
_PREPROCESS = ("permute",)
_SCOPE_PREFIXES: dict[str, tuple[str, ...]] = {
    "attn": ("input_norm", "tp_ag_attn", "qkv", "rope", "repeat_kv", "flash_attn", "attn_",
             "scale_mask_softmax", "softmax_bwd", "mla_", "tp_attn", "cp_"),
    "mlp": ("post_attn_norm", "tp_ag_mlp", "mlp_", "activation", "tp_mlp"),
    "moe_router": _ROUTER,
    "moe_preprocess": _PREPROCESS,
    "moe": _ROUTER + _PREPROCESS + ("ep_", "deepep_", "hybridep_", "etp_", "expert_", "unpermute", "shared_"),
}

# Ops whose host call issues more than one kernel, by name. Ops built with their own count
# carry it as ``Compute.host_ops``, counted from the code where they are built: the
# router's scoring and load-balancing-loss kernels (``router_topk``,
# workloads/moe_launches.router_kernels), a current-scaling expert cast's amax, scale and
# cast kernels (workloads/fp8.py), the all-to-all dispatcher's count bookkeeping and TE's
# permutation and chunk-sort kernels (``permute``, ``expert_sort``: workloads/moe_layers.py).
# Not counted (one launch each, a lower bound): HybridEP / DeepEP's internal kernels and
# the all-gather dispatcher's bookkeeping, the unfused permutation's nonzero /
# masked_select kernels, TEGroupedMLP's FP8 row padding (Fp8Padding / Fp8Unpadding, a
# no-op where the dispatcher pads), the benchmark recipes' random router logits
# (moe_router_force_load_balancing).
LAUNCHES: dict[str, int] = {
    # MoEAlltoAllTokenDispatcher.token_dispatch (token_dispatcher.py, core 0.15-0.18): one
    # all-to-all of the tokens and one of their probabilities; backward the same two.
    "ep_all_to_all_dispatch": 2,
}


def host_sync() -> Delay:
    """The marker of a host-device synchronization inside a block (no GPU time)."""
    return Delay(0.0, HOST_SYNC)


def is_sync(op) -> bool:
    return isinstance(op, Delay) and op.name == HOST_SYNC


def captured(name: str, scopes: frozenset[str]) -> bool:
    """Whether an op of this name runs inside one of the CUDA-graph ``scopes``."""
    if "full_iteration" in scopes:
        return True
    return any(name.startswith(p) for s in scopes for p in _SCOPE_PREFIXES.get(s, ()))


def launches(op, scopes: frozenset[str] = frozenset()) -> int:
    """Ops the host issues one by one for ``op`` (0 inside a captured CUDA graph)."""
    if isinstance(op, Overlap):
        return sum(launches(o, scopes) for o in (*op.main, *op.hidden))
    if not isinstance(op, Compute | Collective) or captured(op.name, scopes):
        return 0
    base = op.name.removesuffix("_bwd")
    return LAUNCHES.get(base, getattr(op, "host_ops", 1))
