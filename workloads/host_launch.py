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

Transformer Engine modules (``TeModules``). Megatron-Core runs its linear layers as TE
modules, and one module call costs the host far more than one bare kernel launch (TE's
Python: quantizer and workspace set-up, autograd bookkeeping). Where the host model is
given the modules' measured cost per call, the ops of each module (``TE_MODULES``, by the
name of its GEMM) cost that instead of the per-op figure: the forward on the forward GEMM,
the backward split evenly over the dgrad and wgrad GEMMs (one backward call issues both),
nothing for the kernels the call issues besides (a LayerNormLinear's fused norm and its
backward, the quantize kernels of a recipe the measurement covers). The collectives a
module issues (sequence-parallel all-gathers, TP reductions) keep the per-op cost: the
measurements ran on one GPU. TEGroupedLinear (the experts), TEDotProductAttention, the
router, the output layer and the plain PyTorch / Triton kernels keep the per-op cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

from workloads.graph import Collective, Compute, Delay, Overlap

HOST_SYNC = "host_sync"
SCOPES = ("attn", "mlp", "moe", "moe_router", "moe_preprocess", "full_iteration")

# Op name prefixes of each CUDA-graph scope (Megatron-Core CudaGraphScope). ``attn``:
# TransformerLayer._forward_attention (input norm, attention, its output projection and
# TP collectives); ``mlp``: a dense layer's MLP; ``moe_router``: the router GEMM and top-k;
# ``moe_preprocess``: the dispatcher's preprocessing up to the sync (the token permutation,
# with cuda_dtoh_point before the all-to-all); ``moe``: the whole MoE block (a hybrid
# model's MoE sub-layer with its pre-norm, ``pre_mlp_norm``). Backward ops
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
    "moe": _ROUTER + _PREPROCESS + ("pre_mlp_norm", "ep_", "deepep_", "hybridep_", "etp_", "expert_",
                                    "unpermute", "shared_"),
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


@dataclass(frozen=True, slots=True)
class EpSync(Delay):
    """A host sync that waits on a collective of ``ranks`` peers first: the MoE layer's
    dropless sync (the token counts all-gathered over the expert-parallel group, then read
    on the host), which no rank passes before the slowest peer's host has issued its
    all-gather (``HostLaunch.skew``)."""
    ranks: int = 1


def ep_sync(ranks: int) -> EpSync:
    """The marker of the MoE layer's cross-rank sync over ``ranks`` expert-parallel peers."""
    return EpSync(0.0, HOST_SYNC, ranks)


def is_sync(op) -> bool:
    return isinstance(op, Delay) and op.name == HOST_SYNC


@cache
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


# Megatron-Core's TE modules, by the graph's name of their GEMM (gpt_layer_specs.py,
# hybrid_layer_specs.py, multi_latent_attention.py, shared_experts.py, moe_layer.py,
# multi_token_prediction.py with the TE backend): TELayerNormColumnParallelLinear (the
# input norm fused: QKV, the dense MLP's fc1, the Mamba mixer's in_proj, MLA's query and
# key-value up projections with their latent norms), TEColumnParallelLinear /
# TERowParallelLinear / TELinear (a Linear: the attention and MLP output projections, the
# Mamba out_proj, MLA's down projections, the shared experts, LatentMoE's latent
# projections, MTP's eh_proj). Longer names first (``te_role`` matches by prefix).
TE_MODULES: dict[str, str] = {
    "mamba_in_proj": "LayerNormLinear", "mla_kv_up": "LayerNormLinear", "mla_q_up": "LayerNormLinear",
    "mlp_up": "LayerNormLinear", "qkv": "LayerNormLinear",
    "fc1_latent_proj": "Linear", "fc2_latent_proj": "Linear", "mamba_out_proj": "Linear",
    "mla_kv_down": "Linear", "mla_q_down": "Linear", "mtp_eh_proj": "Linear",
    "shared_fc1": "Linear", "shared_fc2": "Linear", "attn_proj": "Linear", "mlp_down": "Linear",
    "mla_q": "Linear",
}
# Norms that a following LayerNormLinear fuses (the pre-norm of a layer or sub-layer) and
# the norm op that MLA's two up projections fuse (the query and key-value latent norms).
_FUSABLE_NORMS = ("input_norm", "post_attn_norm")
_MLA_NORMS = "mla_latent_norms"


@dataclass(frozen=True)
class TeModules:
    """Host seconds of one call of each TE module kind, ``(kind, (forward, backward))``,
    already on the system's host CPU, and the FP8 recipe whose quantize kernels those
    calls include (None: BF16 figures; a recipe's cast ops keep the per-op cost)."""
    costs: tuple[tuple[str, tuple[float, float]], ...]
    recipe: str | None = None

    def cost(self, kind: str) -> tuple[float, float]:
        return self._by_kind[kind]

    @cached_property
    def _by_kind(self) -> dict[str, tuple[float, float]]:
        return dict(self.costs)


# Megatron-Core's eager MoE layer forward, by range (MoELayer.router_and_preprocess and
# MoELayer.experts_compute, megatron/core/transformer/moe/moe_layer.py, core 0.14-0.18):
# the graph's forward ops of each (workloads/moe_layers.py, workloads/moe_experts.py). The
# dispatch (the sync's wait and the tokens' all-to-alls) and the combine keep the per-op
# cost, and so does every backward op: no measurement covers them.
MOE_ROUTER_OPS = frozenset({"router_cast", "router", "router_topk", "permute_map",
                            "permute_indices", "permute", "permute_probs"})
MOE_EXPERT_OPS = frozenset({"expert_sort", "expert_fc1", "expert_activation", "expert_fc2",
                            "expert_unsort", "expert_clamp_gate", "expert_clamp_linear",
                            "expert_clamp_cat", "expert_act_offset_h2d", "expert_bias",
                            "expert_bias_cat"})


@dataclass(frozen=True)
class MoeLaunch:
    """Host seconds per kernel launch in the forward of Megatron-Core's eager MoE layer,
    already on the system's host CPU: ``router_s`` in ``router_and_preprocess`` (the router
    GEMM, its scoring and load-balancing loss, the dispatcher's count bookkeeping, the
    permutation), ``experts_s`` in ``experts_compute`` (the chunk sort, TEGroupedMLP's
    per-expert GEMMs and activation, the unsort). Fitted on the CPU time of those NVTX
    ranges (hw_models/data/engines.yaml moe_layer_launch; calibration/moe_host_check.py).
    ``skew_cv``: the coefficient of variation of one rank's host time between two of the
    layer's cross-rank syncs (``EpSync``), fitted on the dispatch range's wait there."""
    router_s: float
    experts_s: float
    skew_cv: float = 0.0

    def per_launch(self, name: str) -> float | None:
        """Seconds per launch of the forward op ``name`` in a measured range; None outside."""
        if name in MOE_ROUTER_OPS:
            return self.router_s
        if name in MOE_EXPERT_OPS:
            return self.experts_s
        return None


@cache
def te_role(name: str) -> tuple[str, str] | None:
    """(module kind, role) of the op ``name`` in a TE module: role 'fwd', 'dgrad', 'wgrad'
    (its GEMMs) or 'cast:<recipe>' (a quantize kernel of its input or output gradient,
    workloads/fp8.py); None outside the modules."""
    for base, kind in TE_MODULES.items():
        if name == base:
            return kind, "fwd"
        if not name.startswith(base + "_"):
            continue
        rest = name[len(base) + 1:]
        if rest in ("dgrad", "wgrad"):
            return kind, rest
        rest = rest.removeprefix("dgrad_")
        return (kind, "cast:" + rest.split("_cast_")[0]) if "_cast_" in rest else None
    return None


def _leaves(ops) -> list:
    out = []
    for op in ops:
        out.extend(_leaves((*op.main, *op.hidden)) if isinstance(op, Overlap) else [op])
    return out


def _gemm_role(leaves, i: int, step: int) -> tuple[str, str] | None:
    """The TE role of the nearest kernel to ``leaves[i]`` in direction ``step`` (+1: after,
    -1: before), past collectives and quantize kernels."""
    j = i + step
    while 0 <= j < len(leaves):
        op = leaves[j]
        if isinstance(op, Compute):
            role = te_role(op.name)
            if not (role and role[1].startswith("cast:")):
                return role
        j += step
    return None


def _fused(leaves, i: int) -> bool:
    """Whether the norm ``leaves[i]`` runs inside a TE LayerNormLinear: MLA's latent norms,
    or a pre-norm whose next kernel is a LayerNormLinear's forward GEMM (its backward: whose
    previous kernel is one of that module's backward GEMMs)."""
    name = leaves[i].name
    base = name.removesuffix("_bwd")
    if base == _MLA_NORMS:
        return True
    if base not in _FUSABLE_NORMS:
        return False
    if name == base:
        return _gemm_role(leaves, i, 1) == ("LayerNormLinear", "fwd")
    role = _gemm_role(leaves, i, -1)
    return role in (("LayerNormLinear", "dgrad"), ("LayerNormLinear", "wgrad"))


def _leaf_s(leaves, i: int, scopes: frozenset[str], per_op_s: float, te: TeModules | None,
            moe: MoeLaunch | None = None) -> float:
    op = leaves[i]
    if not isinstance(op, Compute | Collective) or captured(op.name, scopes):
        return 0.0
    if isinstance(op, Compute) and te is not None:
        role = te_role(op.name)
        if role is not None:
            fwd, bwd = te.cost(role[0])
            if role[1] == "fwd":
                return fwd
            if role[1] in ("dgrad", "wgrad"):
                return bwd / 2
            if role[1] == f"cast:{te.recipe}":
                return 0.0
        elif _fused(leaves, i):
            return 0.0
    rate = moe.per_launch(op.name) if moe is not None and isinstance(op, Compute) else None
    return launches(op, scopes) * (per_op_s if rate is None else rate)


def issue_seconds(ops, scopes: frozenset[str], per_op_s: float, te: TeModules | None = None,
                  moe: MoeLaunch | None = None) -> list[float]:
    """Host seconds to issue each of ``ops`` (an Overlap: its ops together): ``launches`` x
    ``per_op_s``; with ``te``, the ops of TE modules at the modules' cost per call (the
    forward on the forward GEMM, half the backward on each of dgrad and wgrad, nothing
    for the fused norm and the measured recipe's casts); with ``moe``, the forward ops of
    Megatron-Core's MoE layer at its measured cost per launch (``MoeLaunch``); 0 inside a
    captured CUDA graph."""
    if te is None and moe is None:
        return [launches(op, scopes) * per_op_s for op in ops]
    leaves, out, k = _leaves(ops), [], 0
    for op in ops:
        m = _leaf_count(op)
        out.append(sum(_leaf_s(leaves, j, scopes, per_op_s, te, moe) for j in range(k, k + m)))
        k += m
    return out


def _leaf_count(op) -> int:
    """How many of ``_leaves`` one op contributes (an Overlap: its ops', recursively)."""
    if isinstance(op, Overlap):
        return sum(_leaf_count(o) for o in (*op.main, *op.hidden))
    return 1
