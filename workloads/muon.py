"""Muon's optimizer step: momentum orthogonalised by Newton-Schulz, as Megatron-Core runs it.

Source: Megatron-Core's ``dist_muon`` as Megatron-Bridge's Kimi K2 recipe sets it
(recipes/utils/optimizer_utils.py ``distributed_muon_with_cosine_annealing``: 5 steps,
``fp32_matmul_prec`` "medium", ``tp_mode`` "blockwise", Nesterov, Adam for the rest;
recipes/kimi/kimi_k2.py: ``use_distributed_optimizer`` and ``overlap_param_gather`` off) in
the Megatron-LM of its containers (v0.3.1-v0.5.0 pins, megatron/core/optimizer/muon.py,
layer_wise_optimizer.py) and the ``emerging_optimizers`` package it calls (read at v0.3.0:
orthogonalized_optimizers/orthogonalized_optimizer.py, muon_utils.py):

* Which parameters: every 2-D weight that is not the embedding or the output layer
  (``_is_nonlinear_or_embedding``): the attention projections (a fused QKV split into Q, K
  and V, ``muon_split_qkv``), the MLP and shared-expert linears, the router, each routed
  expert's two linears (Transformer Engine's grouped MLP keeps one 2-D weight per expert),
  MTP's projection. Norms, biases, embedding and output layer step with Adam.
* Where: ``LayerWiseDistributedOptimizer`` (``shard_params``) sorts a rank's parameters by
  size and deals them whole, snake order (0..n-1, n-1..0), over the DP x CP group
  (replicated parameters) or the expert-DP group (routed experts); each rank steps only its
  own, on its TP-local shard (``blockwise``: no TP gather). DDP all-reduces the gradients
  (every rank holds them all) and, after the step, the updated parameters are all-gathered
  over the same groups (``allgather_params``). This is the ping-pong path every release
  of those containers takes with DDP's distributed optimizer off (the precomputed layout of
  v0.5.0 on, whose buckets are reduce-scattered in whole-matrix shards, needs it on). Without the layer-wise wrapper (ZeRO 0
  here) every rank steps all its parameters.
* Newton-Schulz on an (m, n) matrix, m <= n (``newton_schulz`` transposes the long side
  away): with matmul precision "medium" the normalised momentum is cast to bf16 and each
  step runs three bf16 GEMMs, A = X X^T (m, m, n), B = b A + c A A (m, m, m), X = a X + B X
  (m, n, m): 4 m^2 n + 2 m^3 FLOPs a step.
* Per element, in fp32 (``MUON_BYTES_PER_PARAM``), around those GEMMs.
"""

from __future__ import annotations

from collections import Counter

from hw_models.compute import gemm_bytes
from hw_models.errors import ClusterSimError
from workloads import dsv4 as dsv4_spec
from workloads import moe as moe_spec
from workloads import moe_parallel
from workloads.graph import Compute
from workloads.model import ModelSpec
from workloads.parallel import ParallelPlan

# HBM bytes per Muon parameter outside the Newton-Schulz GEMMs, one eager kernel each
# (emerging_optimizers v0.3 OrthogonalizedOptimizer.step, newton_schulz; Megatron's
# Float16OptimizerWithFloat16Params around it): the fp32 grad-norm read (4), decoupled
# weight decay p.mul_ (8), momentum lerp_ toward the grad (12), the Nesterov lerp into a
# new tensor (12), F.normalize's norm and division (4 + 8), the cast to bf16 (6) and back
# (6), the two scale multiplies (orth * scale * extra_scale: 16), p.add_ of the update (12),
# the copy of the fp32 master into the 16-bit weight (6).
MUON_BYTES_PER_PARAM = 4 + 8 + 12 + 12 + 12 + 6 + 6 + 16 + 12 + 6
# Eager kernels per Muon matrix besides the GEMMs: mul_, lerp_, lerp, the norm, its clamp,
# the division, the two casts, the two multiplies, add_.
MUON_KERNELS_PER_MATRIX = 11


def ns_step_gemms(rows: int, cols: int) -> list[tuple[int, int, int]]:
    """(m, n, k) of one Newton-Schulz step's three GEMMs on a (rows, cols) matrix."""
    m, n = min(rows, cols), max(rows, cols)
    return [(m, m, n), (m, m, m), (m, n, m)]


def ns_flops(rows: int, cols: int, steps: int) -> float:
    """Newton-Schulz FLOPs of one matrix: ``steps`` x (4 m^2 n + 2 m^3), m <= n."""
    return steps * sum(2.0 * m * n * k for m, n, k in ns_step_gemms(rows, cols))


# ------------------------------------------------------------------ which matrices

def _attention(m: ModelSpec, tp: int) -> list[tuple[int, int]]:
    """(rows, cols) of one attention layer's weights on a TP rank (column-parallel outputs
    and row-parallel inputs split over tp, as the parameter count divides them)."""
    h, a = m.hidden, m.heads
    att = moe_spec.mla(m)
    if att is None:
        kv = m.kv_heads_ * m.head_dim
        return [(a * m.head_dim // tp, h), (kv // tp, h), (kv // tp, h), (h, a * m.head_dim // tp)]
    q = a * att.qk_head_dim
    qp = [(att.q_lora_rank // tp, h), (q // tp, att.q_lora_rank)] if att.q_lora_rank else [(q // tp, h)]
    kv_down = ((att.kv_lora_rank + att.qk_rope_head_dim) // tp, h)
    kv_up = (a * (att.qk_nope_head_dim + att.v_head_dim) // tp, att.kv_lora_rank)
    return qp + [kv_down, kv_up, (h, a * att.v_head_dim // tp)]


def _mlp(m: ModelSpec, ffn: int, tp: int) -> list[tuple[int, int]]:
    """fc1 (gate and up fused when gated) and fc2 on a TP rank."""
    return [((2 if m.gated else 1) * ffn // tp, m.hidden), (m.hidden, ffn // tp)]


def _dsv4_attention(m: ModelSpec, i: int, tp: int) -> list[tuple[int, int]]:
    """DeepSeek-V4 attention of layer ``i`` (workloads/dsv4.py): wq_a, wq_b (by heads),
    wkv, wo_a (by groups), wo_b; the compressor's wkv and wgate; the indexer's wq_b,
    weights_proj and compressor (replicated over TP, workloads/layer_dsv4.py); the mHC
    mixing matrices of both sub-layers."""
    att, h, a = dsv4_spec.dsv4(m), m.hidden, m.heads
    ql, hd, r = att.q_lora_rank, att.head_dim, dsv4_spec.ratio(m, i)
    g = att.o_groups // tp
    out = [(ql, h), (a * hd // tp, ql), (hd, h)]
    out += [(att.o_lora_rank, a * hd // att.o_groups)] * g + [(h, g * att.o_lora_rank)]
    if r:
        out += [(dsv4_spec.coff(att, r) * hd, h)] * 2
    if r and dsv4_spec.is_sparse(att, r):
        ihd = att.index_head_dim
        out += [(att.index_heads * ihd, ql), (att.index_heads, h), (2 * ihd, h), (2 * ihd, h)]
    hc = m.hyper_connections
    return out + ([(hc.mixes, hc.copies * h)] * 2 if hc else [])


def layer_matrices(m: ModelSpec, i: int, tp: int) -> list[tuple[int, int]]:
    """Muon matrices of layer ``i`` replicated over data parallelism (routed experts apart)."""
    out = _dsv4_attention(m, i, tp) if dsv4_spec.dsv4(m) else _attention(m, tp)
    if not moe_spec.is_moe_layer(m, i):
        return out + _mlp(m, m.ffn, tp)
    moe = m.moe
    out.append((moe.experts, m.hidden))                         # router
    for _ in range(moe.shared_experts):
        out += _mlp(m, moe.shared_ffn, tp)
    return out


def expert_matrices(m: ModelSpec, i: int, etp: int) -> list[tuple[int, int]]:
    """Muon matrices of one routed expert of layer ``i`` (none in a dense layer)."""
    return _mlp(m, m.moe.expert_ffn_hidden, etp) if moe_spec.is_moe_layer(m, i) else []


def _numel(mats: list[tuple[int, int]]) -> int:
    return sum(r * c for r, c in mats)


# fp32 state of a Muon matrix: the master weight and the momentum buffer (Adam: 12, with
# its second moment; workloads/memory.py MASTER_AND_ADAM_BYTES).
MUON_STATE_BYTES = 4 + 4


def state_bytes(model: ModelSpec, plan: ParallelPlan, stage: int) -> tuple[float, float]:
    """Optimizer-state bytes per parameter of a rank's replicated and routed-expert parts
    under Muon: 8 for Muon's matrices, 12 for Adam's parameters, weighted by their sizes."""
    from workloads.memory import MASTER_AND_ADAM_BYTES

    def mean(items: list) -> float:
        total = sum(_size(it) for it in items)
        mu = sum(_size(it) for it in items if it[0] == "muon")
        return (mu * MUON_STATE_BYTES + (total - mu) * MASTER_AND_ADAM_BYTES) / total if total \
            else MASTER_AND_ADAM_BYTES
    return tuple(mean(items) for items in _items(model, plan, stage))


# ------------------------------------------------------------------ one rank's share

def deal(sizes: list[float], ranks: int) -> list[int]:
    """Owner of each item under LayerWiseDistributedOptimizer.shard_params: items sorted by
    size (stable), dealt over ``ranks`` in snake order 0..n-1, n-1..0."""
    loop = list(range(ranks)) + list(range(ranks))[::-1]
    owner = [0] * len(sizes)
    for j, idx in enumerate(sorted(range(len(sizes)), key=lambda k: sizes[k])):
        owner[idx] = loop[j % len(loop)]
    return owner


def _expert_items(model: ModelSpec, plan: ParallelPlan, i: int) -> list:
    """One rank's routed experts of layer ``i``: two matrices each, their biases (if any)
    one Adam lump."""
    if not moe_spec.is_moe_layer(model, i):
        return []
    mats = expert_matrices(model, i, plan.etp)
    local = model.moe.experts // plan.ep
    rest = moe_spec.expert_params(model, i) / (plan.ep * plan.etp) - local * _numel(mats)
    return [("muon", mat) for _ in range(local) for mat in mats] + ([("adam", rest)] if rest > 0 else [])


def _items(model: ModelSpec, plan: ParallelPlan, stage: int) -> tuple[list, list]:
    """(replicated, expert) parameters of one rank of ``stage`` as items: a matrix (rows,
    cols) stepped by Muon, or an Adam lump (one per layer: its norms and biases; the
    embedding and the output layer, each its own)."""
    from workloads import moe_training
    dense, experts = [], []
    embed, untied = moe_spec.embedding_params(model)
    for c in range(plan.chunks):
        first, last = moe_training._ends(model, plan, stage, c)
        if first:
            dense.append(("adam", embed / plan.tp))
        for i in moe_training.chunk_layers(model, plan, stage, c):
            mats = layer_matrices(model, i, plan.tp)
            dense += [("muon", mat) for mat in mats]
            dense.append(("adam", max(0.0, moe_training.layer_dense(model, plan, i) - _numel(mats))))
            experts += _expert_items(model, plan, i)
        if last:
            head = (untied or (model.vocab * model.hidden if plan.owns_head_table(tied=True) else 0))
            if head:
                dense.append(("adam", head / plan.tp))
            i = model.layers - 1         # MTP: the (2h -> h) projection, a last-like layer
            per = (moe_spec.mtp_params(model) // model.mtp_layers - moe_spec.expert_params(model, i)
                   if model.mtp_layers else 0)
            for _ in range(model.mtp_layers):
                mats = [(model.hidden, 2 * model.hidden // plan.tp)] + layer_matrices(model, i, plan.tp)
                dense += [("muon", mat) for mat in mats]
                dense.append(("adam", max(0.0, per / plan.tp - _numel(mats))))
                experts += _expert_items(model, plan, i)
    return dense, experts


def _size(item) -> float:
    kind, x = item
    return x[0] * x[1] if kind == "muon" else x


def busiest_share(items: list, ranks: int, steps: int) -> list:
    """The items of the rank of a group with the most Newton-Schulz FLOPs (the step ends
    when the slowest rank's parameters are gathered)."""
    if ranks <= 1:
        return items
    owner = deal([_size(it) for it in items], ranks)
    flops = [0.0] * ranks
    for it, r in zip(items, owner, strict=True):
        if it[0] == "muon":
            flops[r] += ns_flops(*it[1], steps)
    top = max(range(ranks), key=lambda r: flops[r])
    return [it for it, r in zip(items, owner, strict=True) if r == top]


def stage_shares(model: ModelSpec, plan: ParallelPlan, stage: int, steps: int) -> list:
    """The items a rank of ``stage`` steps: its share of the replicated parameters over
    DP x CP and of the routed experts over expert-DP (ZeRO 0: all of them)."""
    dense, experts = _items(model, plan, stage)
    layer_wise = plan.zero >= 1
    return (busiest_share(dense, plan.grad_dp if layer_wise else 1, steps)
            + busiest_share(experts, moe_parallel.edp(plan) if layer_wise else 1, steps))


def step_ops(model: ModelSpec, plan: ParallelPlan, stage: int, steps: int,
             adam_bytes: float) -> list[Compute]:
    """The optimizer step of one rank of ``stage``: the Newton-Schulz GEMMs of its Muon
    matrices (bf16, grouped by shape), then the per-element passes of Muon and Adam."""
    if model.hybrid_pattern is not None:
        raise ClusterSimError("optimizer muon: the matrices of hybrid (Mamba) models are not "
                              "listed; use optimizer adam")
    share = stage_shares(model, plan, stage, steps)
    shapes = Counter(mat for kind, mat in share if kind == "muon")
    ops = []
    for (r, c), n in sorted(shapes.items()):
        for j, (gm, gn, gk) in enumerate(ns_step_gemms(r, c)):
            count = n * steps
            ops.append(Compute("gemm", count * 2.0 * gm * gn * gk,
                               count * gemm_bytes(gm, gn, gk, 2), "bf16", (gm, gn, gk),
                               name=f"muon_ns{j}", host_ops=count))
    muon = sum(_size(it) for it in share if it[0] == "muon")
    adam = sum(_size(it) for it in share if it[0] == "adam")
    ops.append(Compute("optimizer", 0.0, muon * MUON_BYTES_PER_PARAM + adam * adam_bytes,
                       "fp32", name="muon",
                       host_ops=max(1, MUON_KERNELS_PER_MATRIX * sum(shapes.values()))))
    return ops
