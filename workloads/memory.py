"""Memory per rank: weights, gradients, optimizer states, activations (Korthikanti).

Activations are counted component by component (Korthikanti et al. MLSys'23, section 4,
16-bit activations, 1-byte dropout masks); for GPT shapes (FFN 4h, no GQA) the sums
reduce exactly to the paper's formulas in ../shared/reference/training/formulas.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from workloads.model import ModelSpec
from workloads.parallel import ParallelPlan, recompute_modules
from workloads.param_sync import pipeline_of, stage_params, unit_params

GIB = 2**30
MASTER_AND_ADAM_BYTES = 12          # fp32 master weight + Adam m and v (mixed precision)


def adam_state_bytes(moment_bytes: int = 4) -> int:
    """Bytes a parameter of Adam's states: the fp32 master weight and the two moments
    (``moment_bytes`` 2: Megatron-Core's precision-aware optimizer with exp_avg_dtype and
    exp_avg_sq_dtype bf16, Transformer Engine's FusedAdam)."""
    return 4 + 2 * moment_bytes


@dataclass(frozen=True)
class StageMemory:
    stage: int
    weights: float
    grads: float
    optimizer: float
    activations: float
    zero_buffers: float = 0.0      # ZeRO-3: gathered layers and their unreduced gradients

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations + self.zero_buffers

    def gib(self) -> dict[str, float]:
        return {"stage": self.stage, "weights_gib": self.weights / GIB,
                "grads_gib": self.grads / GIB, "optimizer_gib": self.optimizer / GIB,
                "activations_gib": self.activations / GIB,
                "zero_buffers_gib": self.zero_buffers / GIB, "total_gib": self.total / GIB}


def model_states(params: float, dp: int, zero: int, grad_bytes: int,
                 param_bytes: int = 2) -> tuple[float, float, float]:
    """(weights, gradients, optimizer states) in bytes per rank for ``params`` parameters
    replicated over ``dp`` ranks (Rajbhandari et al. SC'20, section 5 and Figure 1:
    Ψ(2 + 2 + K) unsharded; K = 12 for mixed-precision Adam; stage 1 shards the K Ψ
    optimizer states, stage 2 also the gradients, stage 3 also the weights)."""
    weights = params * param_bytes / (dp if zero >= 3 else 1)
    grads = params * grad_bytes / (dp if zero >= 2 else 1)
    optimizer = params * MASTER_AND_ADAM_BYTES / (dp if zero >= 1 else 1)
    return weights, grads, optimizer


def zero3_buffers(model: ModelSpec, plan: ParallelPlan, stage: int, grad_bytes: int,
                  param_bytes: int = 2) -> float:
    """ZeRO-3 working set: the layer being computed and the ``prefetch`` gathered ahead, in
    full (16-bit), plus one layer's full gradient before its reduce-scatter. With
    ``reshard_after_forward=False`` the whole stage stays gathered between the passes."""
    if not plan.zero3_passes:
        return 0.0
    if model.uniform:
        per_chunk = [unit_params(model, plan, stage, c) for c in range(plan.chunks)]
    else:           # a MoE layer is gathered whole: replicated part and routed experts
        from workloads.moe_training import unit_split
        per_chunk = [[d + e for d, e in unit_split(model, plan, stage, c)] for c in range(plan.chunks)]
    units = sorted((u for chunk in per_chunk for u in chunk), reverse=True)
    if not plan.reshard_after_forward:
        return sum(units) * param_bytes + units[0] * grad_bytes
    return sum(units[:plan.prefetch + 1]) * param_bytes + units[0] * grad_bytes


def activation_bytes_per_layer(model: ModelSpec, b: int, t: int, sp: bool, recompute,
                               flash: bool = False) -> float:
    """Stored activation bytes of one layer for one microbatch on one TP rank. Of
    Megatron-Core's recompute_modules (workloads/parallel.recompute_modules) ``layernorm``
    keeps neither norm output, ``mlp`` keeps only the MLP input and ``core_attn`` does
    not keep the score matrices (as selective; a fused kernel stores none)."""
    s, h, a = model.seq_len, model.hidden, model.heads
    sbh = s * b * h
    shard = t if sp else 1                       # norm/dropout regions under SP
    if recompute == "full":
        return 2 * sbh / shard                   # only the layer input is kept
    # selective_op (TorchTitan's per-op policy) is counted as selective: an upper bound
    kv = model.kv_heads_ / a
    mask = sbh / shard if model.dropout else 0.0  # 1-byte mask after attention and MLP
    norms = 4 * sbh / shard                      # two norm inputs
    attn = (2 * sbh / shard                      # QKV input
            + 2 * sbh * (1 + 2 * kv) / t         # Q, K, V
            + 2 * sbh / t                        # projection input
            + mask)
    modules = recompute_modules(recompute)
    if recompute not in ("selective", "selective_op") and "core_attn" not in modules and not flash:
        # softmax output; with dropout also its 1-byte mask and the dropout output
        attn += (5 if model.dropout else 2) * a * s * s * b / t
    up = model.ffn * (2 if model.gated else 1)
    mlp = (2 * sbh / shard                       # MLP input
           + 2 * s * b * up / t                  # activation input
           + 2 * s * b * model.ffn / t           # activation output
           + mask)
    stored = norms + attn + mlp
    if "layernorm" in modules:                   # the two norm outputs are re-run, not kept
        stored -= 2 * 2 * sbh / shard
    if "mlp" in modules:                         # the MLP keeps only its input
        stored -= 2 * s * b * (up + model.ffn) / t
    return stored


def in_flight_chunks(plan: ParallelPlan, stage: int) -> int:
    """Model chunks whose activations a stage holds at its peak (1F1B warm-up depth;
    Megatron-Core's interleaved warm-up: 2 (p - rank - 1) + (v - 1) p, plus one)."""
    m, p, v = plan.microbatches, plan.pp, plan.vpp
    kind = plan.effective_schedule
    if kind not in ("gpipe", "interleaved", "1f1b"):
        raise ValueError(f"{kind}: count live layers with Pipeline.peak_live_layers")
    if kind == "gpipe":
        return m
    if kind == "interleaved":
        return min((p - stage - 1) * 2 + (v - 1) * p + 1, m * v)
    return min(p - stage, m)


def _live(model: ModelSpec, plan: ParallelPlan, stage: int) -> tuple[float, float, float, bool, bool]:
    """(layers whose activations are live at the peak, chunks in flight, microbatches whose
    embedding output is held, holds the embedding, holds the head) of a stage."""
    if plan.effective_schedule in ("gpipe", "interleaved", "1f1b") and plan.chunks == plan.vpp \
            and not (plan.embedding_in_split or plan.loss_in_split):
        chunks = in_flight_chunks(plan, stage)
        layers = chunks * plan.stage_layers(model.layers)[stage] / plan.vpp
        return layers, chunks, in_flight_microbatches(plan, stage), stage == 0, stage == plan.pp - 1
    pipe = pipeline_of(plan, model.layers)
    layers = pipe.peak_live_layers(stage)
    first = any(pipe.is_first(stage, c) for c in range(plan.chunks))
    last = any(pipe.is_last(stage, c) for c in range(plan.chunks))
    per_chunk = max(pipe.rank_layers(stage) / plan.chunks, 1)
    return layers, layers / per_chunk, layers / per_chunk, first, last


def in_flight_microbatches(plan: ParallelPlan, stage: int) -> int:
    """Microbatches one model chunk of a stage holds at its peak: the in-flight chunks
    spread over the stage's ``vpp`` chunks (Megatron-Core's theoretical memory counts the
    embedding for ceil((1 + (p-1)/(p v)) p) microbatches under interleaving, p without)."""
    return -(-in_flight_chunks(plan, stage) // plan.vpp)


def stage_memory(model: ModelSpec, plan: ParallelPlan, stage: int, grad_bytes: int,
                 flash: bool, rank_factor: float = 1.0, param_bytes: int = 2,
                 offload=None, optimizer_kind: str = "adam",
                 moment_bytes: int = 4) -> StageMemory:
    """``rank_factor``: MoE models' slowest-EP-rank token load (workloads/moe_load.py);
    ``offload``: workloads.offload.OffloadOptions (host-resident activations/optimizer);
    ``optimizer_kind`` muon: Muon's matrices keep one fp32 moment, not Adam's two
    (workloads/muon.py ``state_bytes``); ``moment_bytes`` 2: Adam's moments in bf16."""
    params = stage_params(model, plan, stage)
    weights, grads, optimizer = model_states(params, plan.shard_group, plan.zero, grad_bytes,
                                             param_bytes)
    scale = (adam_state_bytes(moment_bytes) / MASTER_AND_ADAM_BYTES,) * 2
    if optimizer_kind == "muon":
        from workloads import muon
        scale = tuple(b / MASTER_AND_ADAM_BYTES for b in muon.state_bytes(model, plan, stage))
    optimizer *= scale[0]
    local = model.with_seq_len(model.seq_len // plan.cp)      # a CP rank's tokens
    live_layers, in_flight, emb_mb, first, last = _live(model, plan, stage)
    if offload is not None and offload.activations > 0:   # the layer at work stays resident
        live_layers = live_layers * (1 - offload.activations) + offload.activations
    if model.uniform:
        per_layer = activation_bytes_per_layer(local, plan.micro_batch, plan.tp, plan.sp,
                                               plan.recompute, flash)
        acts = live_layers * per_layer
    else:                # MoE / MLA / windowed layers differ: workloads/moe_memory.py
        from workloads import moe_memory as mm
        from workloads.moe_training import stage_split
        experts = stage_split(model, plan, stage)[1]
        e_weights, e_grads, e_optimizer = mm.expert_states(model, plan, stage, grad_bytes, experts)
        weights, grads, optimizer = (weights + e_weights, grads + e_grads,
                                     optimizer + e_optimizer * scale[1])
        acts = mm.stage_activations(local, plan, stage, rank_factor, in_flight, offload)
    if offload is not None and offload.optimizer:
        optimizer = 0.0
    sbh = local.seq_len * plan.micro_batch * model.hidden
    if first:       # embedding output (and its dropout mask), per microbatch in flight
        # Only the first model chunk holds it, so interleaving does not multiply it by vpp.
        acts += emb_mb * (3 if model.dropout else 2) * sbh / (plan.tp if plan.sp else 1)
    if last:   # fp32 logits of the microbatch being processed
        acts += 4 * local.seq_len * plan.micro_batch * model.vocab / plan.tp
    if offload is not None and offload.optimizer_states:
        # on the GPU from the reload to the step, when the activations are gone: the peak
        # is the larger of the two, so only what exceeds the activations is counted
        optimizer = max(0.0, optimizer - acts)
    return StageMemory(stage, weights, grads, optimizer, acts,
                       zero3_buffers(model, plan, stage, grad_bytes, param_bytes))


def memory_per_stage(model: ModelSpec, plan: ParallelPlan, grad_bytes: int,
                     flash: bool, rank_factor: float = 1.0, param_bytes: int = 2,
                     offload=None, optimizer_kind: str = "adam",
                     moment_bytes: int = 4) -> list[StageMemory]:
    return [stage_memory(model, plan, s, grad_bytes, flash, rank_factor, param_bytes, offload,
                         optimizer_kind, moment_bytes) for s in range(plan.pp)]
