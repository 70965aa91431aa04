"""What activation offload moves, layer by layer: Megatron-Core's fine-grained activation
offloading (``--fine-grained-activation-offloading --offload-modules ...``, Megatron-Core
0.14+, docs/api-guide/fine_grained_activation_offloading.md) and the fraction of
``offload.activations``.

A named module's stored input goes to host memory after the layer's forward and comes
back before its backward. The bytes are those workloads/memory.py and
workloads/moe_memory.py count for the tensor, on one rank and one microbatch
(16-bit activations; ``sb`` the rank's tokens, ``shard`` tp under sequence parallelism):

- ``attn_norm``: the layer input, 2 sb h / shard;
- ``qkv_linear``: the attention norm's output, 2 sb h / shard (none under
  recompute_modules [layernorm], which re-runs it instead of keeping it);
- ``core_attn``: the local heads' Q, K and V (MLA: after the up projections; none under
  [mla_up_proj], which re-runs them);
- ``attn_proj``: the attention output, the output projection's input;
- ``mlp_norm``: the MLP block's input, 2 sb h / shard;
- ``expert_fc1``: the permuted tokens the rank's experts receive (MoE layers);
- ``moe_act``: the experts' fc1 output, the activation's input (MoE layers; kept as the
  checkpoint input under [moe_act] too).

A recomputed tensor is not stored, so offloading it moves nothing. The layer at work keeps
its activations on the GPU (workloads/memory.py).
"""

from __future__ import annotations

from workloads import dsv4 as dsv4_spec
from workloads import moe as spec
from workloads.model import ModelSpec
from workloads.moe_memory import received_tokens
from workloads.parallel import ParallelPlan, recompute_modules

MODULES = ("attn_norm", "qkv_linear", "core_attn", "attn_proj", "mlp_norm", "expert_fc1",
           "moe_act")


def unsupported(model: ModelSpec, recompute, modules) -> str | None:
    """Why ``modules`` cannot be offloaded on this model under the plan's ``recompute``
    mode, or None."""
    if not modules:
        return None
    bad = [n for n in modules if n not in MODULES]
    if bad:
        return f"offload.modules {bad}: allowed are {list(MODULES)}"
    moe_only = [n for n in modules if n in ("expert_fc1", "moe_act")]
    if moe_only and model.moe is None:
        return f"offload.modules {moe_only} apply to MoE layers; this model has none"
    if recompute == "full":
        return ("offload.modules applies with recompute none or selective: under full "
                "recompute a layer keeps only its input")
    if model.hybrid_pattern is not None:
        return "offload.modules on hybrid (Mamba) models is not modelled"
    if "core_attn" in modules and dsv4_spec.dsv4(model) is not None:
        return ("offload.modules core_attn on DeepSeek-V4 attention is not modelled (which "
                "of its compressed-attention tensors leave is not established)")
    return None


def module_bytes(m: ModelSpec, i: int, plan: ParallelPlan, rank_factor: float,
                 modules) -> float:
    """Stored bytes of layer ``i``'s ``modules`` inputs on one rank, one microbatch
    (``m`` the rank's model: its sequence already split over cp)."""
    if not modules:
        return 0.0
    sb, t = m.seq_len * plan.micro_batch, plan.tp
    shard = t if plan.sp else 1
    recomputed = recompute_modules(plan.recompute)
    hidden = 2 * sb * m.hidden / shard
    att, v4 = spec.mla(m), dsv4_spec.dsv4(m)
    lh = m.heads / t
    if v4 is not None:
        qkv, out = 0.0, 2 * sb * lh * v4.head_dim
    elif att is not None:
        qkv = 2 * sb * lh * (2 * att.qk_head_dim + att.v_head_dim)
        out = 2 * sb * lh * att.v_head_dim
    else:
        qkv, out = 2 * sb * m.qkv_out / t, 2 * sb * m.heads * m.head_dim / t
    if "mla_up_proj" in recomputed:
        qkv = 0.0
    sizes = {"attn_norm": hidden, "qkv_linear": 0.0 if "layernorm" in recomputed else hidden,
             "core_attn": qkv, "attn_proj": out, "mlp_norm": hidden}
    if spec.is_moe_layer(m, i) and "moe" not in recomputed:   # [moe] keeps only the input
        received = received_tokens(m, plan, sb, rank_factor)
        f = m.moe.expert_ffn_hidden / plan.etp
        sizes["expert_fc1"] = 2 * received * spec.token_width(m)
        sizes["moe_act"] = 2 * received * f * (2 if m.gated else 1)
    return sum(sizes.get(n, 0.0) for n in modules)


def layer_bytes(m: ModelSpec, i: int, plan: ParallelPlan, rank_factor: float, offload) -> float:
    """Bytes layer ``i`` sends to the host per microbatch under ``offload``
    (workloads.offload.OffloadOptions): its modules' inputs, or the fraction of all it
    stores."""
    if offload is None or not offload.moves_activations:
        return 0.0
    if offload.modules:
        return module_bytes(m, i, plan, rank_factor, offload.modules)
    from workloads.moe_memory import layer_activation_bytes
    return offload.activations * layer_activation_bytes(m, i, plan, rank_factor)


def chunk_bytes(model: ModelSpec, plan: ParallelPlan, offload, rank_factor: float,
                stage: int) -> tuple[float, ...]:
    """Bytes each model chunk of ``stage`` sends to the host per microbatch (a model whose
    layers differ: MoE, MLA, windowed)."""
    from workloads.moe_training import chunk_layers
    local = model.with_seq_len(model.seq_len // plan.cp)
    return tuple(sum(layer_bytes(local, i, plan, rank_factor, offload)
                     for i in chunk_layers(model, plan, stage, c)) for c in range(plan.chunks))
