"""Memory of non-uniform models (MoE, MLA, windowed attention) on one rank.

Model states: the replicated part as before (over dp), the routed experts sharded by
ep x etp, with the distributed optimizer (zero 1) sharding their optimizer states over
the expert-data-parallel group (Megatron-Core, MoE parallel folding).

Activations are counted per layer as workloads/memory.py does for dense layers
(Korthikanti et al., 16-bit activations, 1-byte dropout masks where the model trains
with dropout), with:
- MLA: the Q and KV latents before and after their norms, Q and K (d_qk = nope + rope),
  V (d_v) and the attention output of the local heads;
- Mamba-2 (hybrid models, one sub-layer per pattern character): ``_mamba``;
- MoE: the router input and fp32 probabilities (n x E), the permuted tokens (fc1 input),
  fc1 output and activation output (fc2 input) of the r tokens the slowest EP rank
  receives (not fc2's output: the probabilities multiply the activation, Megatron-Core
  0.13+, so the combine keeps nothing) (latent-wide under LatentMoE, plus the two latent projections' n x l
  outputs / inputs), and the shared experts' activations.
Dispatch buffers: one layer's dispatch and combine send/receive buffers (e r h each) are
live at a time; they are counted once per stage. Megatron-Core's recompute_modules
(``layer_activation_bytes``): [layernorm] keeps no norm output, [moe_act] not the experts'
activation output, [moe] only the MoE block's input.
"""

from __future__ import annotations

from workloads import dsv4 as dsv4_spec
from workloads import mamba as mamba_spec
from workloads import moe as spec
from workloads import moe_parallel
from workloads.memory import MASTER_AND_ADAM_BYTES
from workloads.model import ModelSpec
from workloads.parallel import ParallelPlan, recompute_modules


def received_tokens(m: ModelSpec, plan: ParallelPlan, sb: float, rank_factor: float) -> float:
    """Tokens the experts of the slowest EP rank receive for the rank's sb = s x b tokens:
    each of its sb / tp tokens routed top-k times, times the rank's load over the mean
    (``rank_factor``), and etp times under expert tensor parallelism."""
    return sb / plan.tp * m.moe.top_k * rank_factor * plan.etp


def _mask(m: ModelSpec, sb: float, shard: int) -> float:
    """The 1-byte dropout mask after attention or the MLP; none at dropout 0, where
    PyTorch's dropout returns its input (workloads/memory.py counts dense layers so)."""
    return sb * m.hidden / shard if m.dropout else 0.0


def _attention(m: ModelSpec, sb: float, t: int, shard: int) -> float:
    h = m.hidden
    att = spec.mla(m)
    if att is None:
        qkv = 2 * sb * m.qkv_out / t
        return 2 * sb * h / shard + qkv + 2 * sb * m.heads * m.head_dim / t + _mask(m, sb, shard)
    lh = m.heads / t
    latents = 2 * 2 * sb * ((att.q_lora_rank or 0) + att.kv_lora_rank + att.qk_rope_head_dim)
    qkv = 2 * sb * lh * (2 * att.qk_head_dim + att.v_head_dim)
    return 2 * sb * h / shard + latents + qkv + 2 * sb * lh * att.v_head_dim + _mask(m, sb, shard)


def _mlp(m: ModelSpec, sb: float, t: int, shard: int, moe_layer: bool, received: float,
         ep_etp: tuple[int, int]) -> float:
    h, up = m.hidden, 2 if m.gated else 1
    base = 2 * sb * h / shard + _mask(m, sb, shard)             # MLP input, dropout mask
    if not moe_layer:
        return base + 2 * sb * m.ffn * up / t + 2 * sb * m.ffn / t
    n, f, d = sb / t, m.moe.expert_ffn_hidden / ep_etp[1], spec.token_width(m)
    # fc1's input, fc1's output (the activation's input), the activation's output (fc2's
    # input). Not fc2's output: the routing probabilities multiply the activation
    # (Megatron-Core 0.13+, experts.py bias_act_func), so the combine's unpermute keeps
    # nothing for its backward (token_dispatcher.py: unpermute without probs).
    routed = 2 * received * (d + f * up + f)
    shared = 2 * n * m.moe.shared_experts * m.moe.shared_ffn * (up + 1)
    # LatentMoE: the fc1_latent_proj output (the permutation's input) and the
    # fc2_latent_proj input, n x latent each (the MLP input already counted)
    latent = 2 * 2 * n * m.moe.latent_size if m.moe.latent_size else 0
    return base + 4 * n * m.moe.experts + routed + shared + latent


def _mlp_recomputed(m: ModelSpec, sb: float, t: int) -> float:
    """What recompute [mlp] does not keep of a dense MLP (it keeps only its input): the
    fc1 output and the activation output, 16-bit, on the local ffn / tp channels."""
    return 2 * sb * m.ffn * (2 if m.gated else 1) / t + 2 * sb * m.ffn / t


def _mamba(m: ModelSpec, sb: float, t: int, shard: int) -> float:
    """A Mamba-2 mixer (workloads/layer_mamba.py): the in_proj input (2 sbh, its shard with
    sequence parallelism), the contiguous (b, l, d) in_proj output the fused conv-scan
    function saves, its output, the norm's input and output (the out_proj input), all
    16-bit; the conv output, the chunk states and C B^T are recomputed in the backward."""
    s = m.mamba
    return 2 * sb * m.hidden / shard + 2 * sb * (s.in_proj_out + 3 * s.d_inner) / t


def _moe_recomputed(m: ModelSpec, sb: float, t: int, shard: int, received: float,
                    ep_etp: tuple[int, int], modules: frozenset[str]) -> float:
    """What a MoE block does not keep under recompute_modules: with ``moe`` all but its
    input (MoELayer checkpoints its whole forward and saves only hidden_states; the
    bias-dropout-add mask is outside it), else the experts' activation output with
    ``moe_act`` and the shared experts' activations with ``shared_experts``."""
    if "moe" in modules:
        return _mlp(m, sb, t, shard, True, received, ep_etp) - 2 * sb * m.hidden / shard \
            - _mask(m, sb, shard)
    freed = 0.0
    if "moe_act" in modules:
        freed += 2 * received * m.moe.expert_ffn_hidden / ep_etp[1]
    if "shared_experts" in modules:
        freed += 2 * sb / t * m.moe.shared_experts * m.moe.shared_ffn * ((2 if m.gated else 1) + 1)
    return freed


def hybrid_activation_bytes(m: ModelSpec, i: int, plan: ParallelPlan, received: float) -> float:
    """One sub-layer of a hybrid model: its norm's input (2 sbh), then the Mamba mixer,
    attention or MLP block as a transformer layer's half stores it (an MLP sub-layer under
    recompute [mlp] keeps only its input; a MoE sub-layer under [layernorm] not its
    pre-MLP norm's output, the only norm of a hybrid model that is not fused into a
    linear; under [moe] only its input)."""
    sb, t = m.seq_len * plan.micro_batch, plan.tp
    shard = t if plan.sp else 1
    k = mamba_spec.kind(m, i)
    if k == mamba_spec.MAMBA:
        body = _mamba(m, sb, t, shard)
    elif k == mamba_spec.ATTENTION:
        body = _attention(m, sb, t, shard)
    else:
        body = _mlp(m, sb, t, shard, k == mamba_spec.MOE, received, (plan.ep, plan.etp))
    stored = 2 * sb * m.hidden / shard + body
    modules = recompute_modules(plan.recompute)
    if "mlp" in modules and k == mamba_spec.MLP:
        stored -= _mlp_recomputed(m, sb, t)
    if k == mamba_spec.MOE:
        if "layernorm" in modules:
            stored -= 2 * sb * m.hidden / shard
        stored -= _moe_recomputed(m, sb, t, shard, received, (plan.ep, plan.etp), modules)
    return stored


def layer_activation_bytes(m: ModelSpec, i: int, plan: ParallelPlan, rank_factor: float) -> float:
    """Stored activations of layer ``i`` for one microbatch on one rank."""
    sb, t = m.seq_len * plan.micro_batch, plan.tp
    shard = t if plan.sp else 1
    if plan.recompute == "full":
        return 2 * sb * m.hidden / shard
    received = received_tokens(m, plan, sb, rank_factor) if m.moe else 0.0
    if m.hybrid_pattern is not None:
        return hybrid_activation_bytes(m, i, plan, received)
    moe_layer = spec.is_moe_layer(m, i)
    if dsv4_spec.dsv4(m) is not None:
        attention = (dsv4_spec.activation_bytes(m, i, sb, t, shard)
                     + dsv4_spec.hc_activation_bytes(m, sb, shard))
    else:
        attention = _attention(m, sb, t, shard)
    stored = (4 * sb * m.hidden / shard + attention
              + _mlp(m, sb, t, shard, moe_layer, received, (plan.ep, plan.etp)))
    modules = recompute_modules(plan.recompute)
    if "layernorm" in modules:
        # Megatron-Core recompute_modules [layernorm]: the two norm outputs (the QKV and
        # MLP inputs) are re-run
        stored -= 2 * 2 * sb * m.hidden / shard
    if moe_layer:
        stored -= _moe_recomputed(m, sb, t, shard, received, (plan.ep, plan.etp), modules)
    att = spec.mla(m)
    if "mla_up_proj" in modules and att is not None:
        # [mla_up_proj]: Q, K, V (the up projections' outputs after RoPE) are re-run
        stored -= 2 * sb * m.heads / t * (2 * att.qk_head_dim + att.v_head_dim)
    elif "mla_up_proj" in modules and dsv4_spec.dsv4(m) is not None:
        # DeepSeek-V4: the local heads' queries and the KV entry before and after its norm
        stored -= dsv4_spec.up_proj_bytes(m, sb, t)
    if "mlp" in modules and not moe_layer:
        stored -= _mlp_recomputed(m, sb, t)
    return stored


def dispatch_buffers(m: ModelSpec, plan: ParallelPlan, rank_factor: float) -> float:
    if m.moe is None or plan.ep * plan.etp == 1:
        return 0.0
    received = received_tokens(m, plan, m.seq_len * plan.micro_batch, rank_factor)
    return 2 * 2 * 2 * received * spec.token_width(m)   # dispatch + combine, send + receive


def expert_states(model: ModelSpec, plan: ParallelPlan, stage: int, grad_bytes: int,
                  experts: float) -> tuple[float, float, float]:
    """(weights, gradients, optimizer) bytes of the routed experts held by one rank: the
    optimizer states sharded over expert-DP under ZeRO 1 and 3, the weights and gradients
    too under ZeRO-3 (Megatron FSDP; workloads/fsdp.py, which runs when dp > 1)."""
    size = moe_parallel.edp(plan)
    fsdp = size if plan.zero3_passes else 1
    return (2 * experts / fsdp, grad_bytes * experts / fsdp,
            MASTER_AND_ADAM_BYTES * experts / (size if plan.zero >= 1 else 1))


def stage_activations(m: ModelSpec, plan: ParallelPlan, stage: int, rank_factor: float,
                      in_flight: int, offload=None) -> float:
    """The stage's mean layer x its layers per chunk x chunks in flight (all the chunks
    the rank holds: ``plan.chunks``), the MTP layers on the rank that holds the pipeline's
    last virtual stage (rank 0 under zb-v and DualPipeV, both end ranks under DualPipe),
    and one layer's dispatch buffers. Under activation offload (``offload``:
    workloads.offload.OffloadOptions) each layer keeps what it does not send to the host
    (workloads/offload_modules.py), the layer at work all of it."""
    from workloads.moe_training import chunk_layers, holds_last
    from workloads.offload_modules import layer_bytes
    ids = [i for c in range(plan.chunks) for i in chunk_layers(m, plan, stage, c)]
    sent = [layer_bytes(m, i, plan, rank_factor, offload) for i in ids]
    mean = (sum(layer_activation_bytes(m, i, plan, rank_factor) for i in ids) - sum(sent)) / len(ids)
    acts = in_flight * len(ids) / plan.chunks * mean + max(sent)
    if holds_last(m, plan, stage):
        acts += in_flight * m.mtp_layers * sum(layer_activation_bytes(m, i, plan, rank_factor)
                                               for i in spec.mtp_layer_ids(m))
    return acts + dispatch_buffers(m, plan, rank_factor)
