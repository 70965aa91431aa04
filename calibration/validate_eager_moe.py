"""Eager Megatron-Core MoE runs published by users: predicted vs published throughput per GPU.

Rows: calibration/reference/modern/moe_eager_training.csv (Alibaba's Pai-Megatron-Patch
issues #658 and #643 on H800, Megatron-MoE-ModelZoo issue #7 on B200). Every row runs
Megatron-Core's MoE layer eagerly (no CUDA graphs) on an x86 host, so they check the eager
layer's host cost and its wait for the slowest expert-parallel rank (docs/accuracy.md,
"Host-side launch cost of eager training") on runs outside NVIDIA's performance tables.
Nothing is fitted to them; the ModelZoo run is the one whose nsys ranges fit the layer's
forward host cost, and its whole step is the check of the rest of the iteration.

Each row runs its published plan with what its source states: the all-to-all dispatcher, the
load-balancing loss, the router's precision and the permutation's fusion, the recompute mode
or modules, the capacity factor, Megatron's userbuffer TP overlap where the script sets
``--tp-comm-overlap``, the distributed optimizer, balanced routing (the runs force-balance
theirs, or cap each expert at its balanced share), the memory check off. Layer counts that do
not split over pp x vp count the embedding and the loss as one layer each.

The metric is tokens/s per GPU (row_runner); where only Megatron's model TFLOP/s is published
it converts with Megatron's own FLOP count (``megatron_flops_per_token``).
"""

from __future__ import annotations

import math

import pandas as pd

from calibration import row_runner
from calibration.row_runner import _num
from workloads import dsv4
from workloads.model import ModelSpec, presets

CSV = "moe_eager_training.csv"


def rows() -> pd.DataFrame:
    return row_runner.read_rows(CSV)


def megatron_flops_counted(m: ModelSpec) -> bool:
    """Whether ``megatron_flops_per_token`` counts ``m``: a MoE model with grouped-query
    attention, MLA or DeepSeek-V4's hybrid attention."""
    return m.moe is not None and (m.attention is None or m.attention.kind in ("mla", "dsv4"))


def _dsv4_attention_flops(m: ModelSpec, seq: int) -> float:
    """Forward FLOPs per token of DeepSeek-V4's hybrid attention, every layer and MTP layer,
    as Megatron-LM counts them (``_dsv4_hybrid_self_attention_flops``, dev branch,
    2026-08): the q LoRA, the shared kv head and the grouped low-rank output; the window's
    keys on every layer; the compressor's two projections (twice as wide on CSA layers);
    on CSA layers the indexer's projections, the top-k compressed keys (the causal mean of
    min(top-k, s/r)) and its scoring of s/r entries at causal half; on HCA layers every
    compressed key, s/r at causal half."""
    att, h, a = dsv4.dsv4(m), m.hidden, m.heads
    hd, ql = att.head_dim, att.q_lora_rank
    total = 0.0
    for i in range(m.layers + m.mtp_layers):
        r = dsv4.ratio(m, i)
        f = (ql * (h + a * hd + 1) + h * hd + hd + a * hd * att.o_lora_rank
             + att.o_groups * att.o_lora_rank * h + a * att.window * hd * 2)
        if r:
            f += h * dsv4.coff(att, r) * hd * 2
        if r and dsv4.is_sparse(att, r):
            ih, ihd, k = att.index_heads, att.index_head_dim, min(att.index_topk, seq // r)
            f += (a * k * (1 - k * r / (2 * seq)) * hd * 2 + h * 2 * ihd * 2 + ql * ih * ihd
                  + h * ih + ih * ihd / r * seq)
        elif r:
            f += a * hd / r * seq
        total += 2 * f
    return total


def megatron_flops_per_token(m: ModelSpec, seq: int) -> float:
    """Model FLOPs per trained token as Megatron-LM logs them (megatron/training/training.py
    ``num_floating_point_operations``, transformer_flops, 2025-2026): 3 x the forward GEMMs;
    attention's projections and its core at causal half (GQA: 2 [h (q + k + v) + q s + q h];
    MLA: the q and kv LoRA projections with their norms, the RoPE key, the output projection
    and a core of heads (qk + rope + v) s / 2 x 2; DeepSeek-V4: ``_dsv4_attention_flops``); the dense layers' MLP, the routed experts
    and the shared experts at 3 GEMM widths each (SwiGLU); each MTP layer as one more layer
    of the last layer's kind, with its norms, its 2h x h projection and its own logits."""
    if not megatron_flops_counted(m):
        raise ValueError("Megatron's FLOP count of a model without MoE layers is not "
                         "reproduced here")
    h, mtp, moe = m.hidden, m.mtp_layers, m.moe
    mla = m.attention
    if dsv4.dsv4(m) is not None:
        attn_all = _dsv4_attention_flops(m, seq)
    elif mla is None:
        q = m.heads * m.head_dim
        attn_all = 2 * (h * (q + 2 * m.kv_heads_ * m.head_dim) + q * seq + q * h) * (m.layers + mtp)
    else:
        qk = mla.qk_nope_head_dim + mla.qk_rope_head_dim
        proj = (mla.q_lora_rank * (h + m.heads * qk + 1)
                + mla.kv_lora_rank * (h + m.heads * (mla.qk_nope_head_dim + mla.v_head_dim) + 1)
                + h * mla.qk_rope_head_dim + m.heads * mla.v_head_dim * h)
        attn = 2 * (proj + (m.heads * qk / 2 + m.heads * mla.v_head_dim / 2) * seq)
        attn_all = attn * (m.layers + mtp)
    width = 3 if m.gated else 2
    dense = moe.dense_layers
    routed = moe.expert_ffn_hidden * moe.top_k + moe.shared_ffn * (moe.shared_experts or 0)
    mlp = 2 * h * width * (m.ffn_hidden * dense + routed * (m.layers - dense + mtp))
    mtp_proj = 2 * mtp * (3 * h + 2 * h * h)
    return 3 * (attn_all + mlp + mtp_proj + 2 * h * m.vocab * (mtp + 1))


def published(row) -> float:
    """Tokens/s per GPU: the published column, or global batch x sequence / step / GPUs, or
    the published model TFLOP/s over Megatron's FLOPs per token (NaN where that count does
    not apply: ``megatron_flops_counted``)."""
    per_gpu = _num(row.throughput_tokens_per_s_per_gpu)
    if per_gpu is not None:
        return per_gpu
    tokens = float(row.global_batch_seqs) * float(row.seq_len)
    step = _num(row.step_time_s)
    if step is not None:
        return tokens / step / float(row.num_gpus)
    tflops, model = _num(row.model_tflops_per_gpu), presets()[row.arch_id]
    if tflops is None or not megatron_flops_counted(model):
        return float("nan")
    return tflops * 1e12 / megatron_flops_per_token(model, int(row.seq_len))


def skip_reason(row, zoo=None) -> str | None:
    zoo = presets() if zoo is None else zoo
    gpu = str(row.gpu_type).split()[0]
    return row_runner.first_reason([
        row_runner.preset_check(row, zoo), row_runner.system_check(gpu),
        (lambda: math.isnan(published(row)), "no throughput, step time or TFLOP/s published"),
    ])


def _recompute(text: str) -> dict:
    """``recompute`` full / none, or Megatron-Core's recompute_modules (space-separated)."""
    if text in ("full", "none"):
        return {"recompute": text}
    return {"recompute_modules": text.split()}


def scenario_for(row, fidelity: str = "analytical") -> dict:
    model = presets()[row.arch_id]
    tp, pp, vpp = int(row.tp), int(row.pp), int(_num(row.vpp) or 1)
    parallel = {"tp": tp, "pp": pp, "vpp": vpp, "ep": int(row.ep), "etp": int(row.etp),
                "sequence_parallel": tp > 1, "zero": 1,
                "schedule": "interleaved" if vpp > 1 else "1f1b",
                "tp_comm_overlap": "ring" if row.tp_comm_overlap == "true" else "none"}
    if model.layers % (pp * vpp):
        parallel |= {"account_for_embedding_in_pipeline_split": True,
                     "account_for_loss_in_pipeline_split": True}
    moe = {"dispatcher": "alltoall", "aux_loss": True, "router_fusion": False,
           "permute_fusion": row.permute_fusion == "true"}
    if pd.notna(row.router_dtype):
        moe["router_dtype"] = row.router_dtype
    if _num(row.capacity_factor) is not None:
        moe["capacity_factor"] = _num(row.capacity_factor)
    return row_runner.training_scenario(
        row, mtp=model.mtp_layers, micro_batch=int(row.micro_batch), fp8={},
        recompute=_recompute(str(row.recompute)), parallel=parallel, moe=moe,
        cuda_graphs=[], fidelity=fidelity)


def plan_text(row) -> str:
    """The plan column: tp / pp / vpp / ep, micro and global batch, the row's notes."""
    return (f"tp{row.tp} pp{row.pp} vpp{row.vpp} ep{row.ep} mbs{row.micro_batch} "
            f"gbs{row.global_batch_seqs} {row.notes}")


def run(predict, fidelity: str = "analytical") -> pd.DataFrame:
    """Every row: predicted tokens/s per GPU, or why skipped (row_runner.run_rows)."""
    return row_runner.run_rows(rows(), skip_reason, scenario_for, predict, fidelity, plan_text,
                               lambda row: round(published(row), 1))


def summary(df: pd.DataFrame) -> dict:
    return row_runner.summary(df)


def summary_line(s: dict) -> str:
    return row_runner.summary_line("eager community runs", s, CSV)
