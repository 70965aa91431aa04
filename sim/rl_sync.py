"""Moving weights between the RL step's phases: the weight sync (training layout ->
rollout layout) and, when colocated, the onload/offload of the training states.

broadcast sync (NeMo RL's default transport between separate pools, whose design note
"NCCL Reshard Refit" says it "broadcasts every full parameter tensor from the training
ranks to every generation rank"): every rollout GPU receives the whole model at the
rollout precision. Between separate pools it is one NCCL broadcast over a group of every
training rank and every rollout rank (vllm_backend.py init_collective: "Place vLLM ranks
after all training ranks so all training workers can join"; packed_broadcast_producer,
src 0): NCCL's ring brings each byte into a node once over all the node's NICs (one ring
per channel, one NIC per ring) and forwards it over NVLink, pipelined in chunks, so the
time is the model's bytes at a node's NIC bandwidth (the network's broadcast curve). When
colocated, each GPU receives the whole model from a training GPU of its node.

Every path also pays a host-side cost per Hugging Face tensor of the model
(hw_models/data/engines.yaml weight_refit): the sender exports the tensors one by one
(megatron_bridge export_hf_weights) and vLLM's load_weights maps and copies each.

nccl sync: every rollout GPU receives the part of its rollout shard that it does not
already hold (workloads.rl.reshard_inbound), from a training GPU of the same model copy,
on the scale-up fabric when both sit in one domain and over the NICs otherwise (the
profile's fitted point-to-point curves); NCCL broadcasts pipeline, so the time is that
of the most loaded receiver, not of the number of replicas. The part already in place is
copied once through HBM (read + write).

checkpoint sync: one training copy writes the policy at 16 bits to the checkpoint tier,
then every rollout replica reads its copy at the rollout precision (hw_models.storage).

Colocated onload/offload: the training states (16-bit weights, fp32 master weights and
Adam moments, sharded as the plan shards them; workloads.memory) come back from host
memory before the training-side passes and go back after them; the frozen models of the
step (reference, reward) are loaded but not written back. Gradients are zeroed buffers,
not copied. The rollout engine sleeps during the training-side passes at vLLM's sleep
level 1 (NeMo RL vllm_worker.py: ``llm.sleep(level=1)``), which copies the engine's weights
to host memory and discards its KV cache; waking it copies the weights back before the
sync overwrites them (vLLM docs, "Sleep Mode": level 1 offloads the weights to CPU
memory and discards the KV cache). Both copies cross the host link.
"""

from __future__ import annotations

import numpy as np

from hw_models import catalog, storage
from hw_models.catalog import SystemSpec, refit_per_tensor_s
from hw_models.profile import Profile
from sim.network import AnalyticalNetwork, ClusterLayout
from sim.rl_config import RLWorkload
from sim.rl_timeline import PoolSizes
from sim.run_config import StorageConfig
from sim.scenario import Scenario
from workloads import dsv4 as dsv4_spec
from workloads import memory
from workloads import rl as steps
from workloads.graph import CommGroup
from workloads.model import ModelSpec, resolve
from workloads.moe import is_moe_layer, mla
from workloads.parallel import ParallelPlan

WEIGHT_BYTES = {"fp16": 2, "bf16": 2, "fp8": 1}


def cluster_network(sc: Scenario, system: SystemSpec, prof: Profile) -> AnalyticalNetwork:
    net = sc.cluster.network
    lay = ClusterLayout(system, sc.cluster.nodes, net.nic_gbps or system.nic_gbps,
                        net.oversubscription)
    return AnalyticalNetwork(lay, prof)


def train_layout(w: RLWorkload, pools: PoolSizes) -> tuple[steps.Layout, int]:
    """(layout, data-parallel copies) for the reshard. Expert parallelism counts as a further
    split of each layer's matrices: experts hold nearly all of a MoE model's weights (the
    attention weights replicated over the ep ranks are undercounted)."""
    p = w.train.parallel
    dp = pools.train // (p.tp * p.pp)
    return steps.Layout(p.tp * p.ep, p.pp), max(1, dp // p.ep)


def nccl_sync(sc: Scenario, system: SystemSpec, pools: PoolSizes, model: ModelSpec,
              prof: Profile) -> dict:
    w: RLWorkload = sc.workload
    rp = w.rollout.parallel
    rollout = steps.Layout(rp.tp * rp.ep, rp.pp)
    train, dp = train_layout(w, pools)
    total = model.params * WEIGHT_BYTES[w.rollout_precision]
    if w.sync == "broadcast":        # every rollout GPU receives every full tensor
        inbound = np.full(pools.rollout, total)
    else:
        inbound = steps.reshard_inbound(total, train, dp, rollout, pools.rollout, pools.colocated)
    g = int(np.argmax(inbound))
    net = cluster_network(sc, system, prof)
    if w.sync == "broadcast" and not pools.colocated:
        group = CommGroup(tuple(range(pools.train + pools.rollout)))
        return {"weight_sync_s": net.collective_time("broadcast", total, group),
                "sync_bytes_per_gpu": total, "sync_bytes_total": float(inbound.sum())}
    if pools.colocated:
        src = _nearest_holder(g, train, dp, rollout)
        dst = g
    else:       # training pool on the first ranks, rollout pool after it
        src, dst = 0, pools.train + g
    moved = net.p2p_time(src, dst, float(inbound[g]))
    local = max(0.0, total / rollout.gpus - inbound[g]) * 2 / system.gpu_spec.hbm_bw
    return {"weight_sync_s": moved + local, "sync_bytes_per_gpu": float(inbound[g]),
            "sync_bytes_total": float(inbound.sum())}


def hf_tensor_count(m: ModelSpec) -> int:
    """Tensors of the model's Hugging Face checkpoint that a refit exports and loads one by
    one (the main model; the multi-token-prediction layers are not loaded by vLLM's main
    model). Per layer: the attention projections (q, k, v, o, their biases, Qwen3's q/k
    norms; MLA: q_a_proj, q_a_layernorm, q_b_proj or q_proj, kv_a_proj_with_mqa,
    kv_a_layernorm, kv_b_proj, o_proj; DeepSeek-V4: ``_dsv4_tensors``), two norms, and the MLP (gate, up, down) or, in a
    MoE layer, the router (plus its bias: DeepSeek-V3's e_score_correction_bias), every
    expert's matrices and the shared experts' (LatentMoE: and fc1_latent_proj,
    fc2_latent_proj). A hybrid model's sub-layers (hybrid_pattern)
    have one norm each: a Mamba mixer exports in_proj, conv1d weight and bias, dt_bias,
    A_log, D, its norm and out_proj; an attention or MLP sub-layer its half of the above.
    Then the embedding, final norm, output layer."""
    norm = 2 if m.norm == "layernorm" else 1          # LayerNorm has a weight and a bias
    mlp = (3 if m.gated else 2) * (2 if m.bias else 1)
    att = mla(m)
    if dsv4_spec.dsv4(m) is not None:
        attn = 0                                      # per layer: _dsv4_tensors
    elif att is not None:
        attn = (3 if att.q_lora_rank else 1) + 4
    else:
        attn = 4 * (2 if m.bias else 1) + (2 if m.qk_norm else 0)
    count = 0
    for i in range(m.layers):
        kind = m.hybrid_pattern[i] if m.hybrid_pattern else None
        if kind == "M":    # in_proj, conv1d weight and bias, dt_bias, A_log, D, norm, out_proj
            count += norm + 8 + 2 * int(m.bias)
            continue
        count += (attn if kind in (None, "*") else 0) + (2 if kind is None else 1) * norm
        if kind == "*":
            continue
        if is_moe_layer(m, i):
            router = 1 + int(m.moe.router != "softmax" or m.bias)
            latent = (2 * (2 if m.bias else 1)) if m.moe.latent_size else 0   # fc1/fc2_latent_proj
            count += router + latent + m.moe.experts * mlp + m.moe.shared_experts * (3 if m.gated else 2)
        else:
            count += mlp
    count += sum(_dsv4_tensors(m, i) for i in range(m.layers)) if dsv4_spec.dsv4(m) else 0
    return count + 1 + int(m.learned_positions) + norm + int(not m.tied_embeddings)


def _dsv4_tensors(m: ModelSpec, i: int) -> int:
    """A DeepSeek-V4 layer's attention and mHC tensors (inference/model.py): wq_a, q_norm,
    wq_b, wkv, kv_norm, wo_a, wo_b, attn_sink; a compressor's ape, wkv, wgate, norm; the
    indexer's wq_b, weights_proj and its compressor; hc fn, base, scale per sub-layer."""
    att, r = dsv4_spec.dsv4(m), dsv4_spec.ratio(m, i)
    sparse = bool(r) and dsv4_spec.is_sparse(att, r)
    return 8 + (4 if r else 0) + (6 if sparse else 0) + (6 if m.hyper_connections else 0)


def with_tensor_cost(sync: dict, model: ModelSpec, system: SystemSpec) -> dict:
    """``sync`` plus the host-side per-tensor cost of the refit (export + load_weights),
    paid once per tensor on every path, colocated CUDA-IPC included."""
    tensors = hf_tensor_count(model)
    cost = tensors * refit_per_tensor_s(system)
    return {**sync, "weight_sync_s": sync["weight_sync_s"] + cost,
            "sync_transport_s": sync["weight_sync_s"], "sync_tensor_s": cost,
            "sync_tensors": tensors}


def _nearest_holder(g: int, train: steps.Layout, dp: int, rollout: steps.Layout) -> int:
    """A training GPU (of GPU g's own data-parallel copy) that holds part of what g needs
    and sits farthest from g: the slowest link of the gather bounds it."""
    rs, rt = steps.rollout_region(g, rollout)
    d = (g // train.tp) % dp
    best = g
    for s in range(train.pp):
        for t in range(train.tp):
            h = s * train.tp * dp + d * train.tp + t
            ov = steps.interval_overlap(rs, rollout.pp, s, train.pp) * steps.interval_overlap(rt, rollout.tp, t, train.tp)
            if h != g and ov > 0 and abs(h - g) > abs(best - g):
                best = h
    return best


def checkpoint_sync(sc: Scenario, system: SystemSpec, pools: PoolSizes, model: ModelSpec) -> dict:
    w: RLWorkload = sc.workload
    cfg = sc.cluster.storage or StorageConfig()
    tier = cfg.checkpoint_tier()
    path = cfg.path(system.nic_bw_per_gpu * system.gpus_per_node)
    per = system.gpus_per_node
    rp = w.rollout.parallel
    replicas = pools.rollout // (rp.tp * rp.pp * rp.ep)
    write = tier.transfer_time("write", model.params * 2, max(1, pools.train // per), path)
    read_bytes = replicas * model.params * WEIGHT_BYTES[w.rollout_precision]
    read = tier.transfer_time("read", read_bytes, max(1, pools.rollout // per), path)
    return {"weight_sync_s": write + read, "sync_bytes_per_gpu": read_bytes / pools.rollout,
            "sync_bytes_total": model.params * 2 + read_bytes}


def _train_plan(w: RLWorkload, pools: PoolSizes) -> ParallelPlan:
    """The training layout as the memory model sees it; the distributed optimizer shards
    over the data- and context-parallel ranks."""
    p = w.train.parallel
    dp = pools.train // (p.tp * p.pp * p.cp)
    layers = tuple(p.pipeline_layers) if p.pipeline_layers else None
    return ParallelPlan(p.tp, p.pp, dp, 1, dp, zero=p.zero, ep=p.ep, cp=p.cp,
                        pipeline_layers=layers)


def _host_bw(system: SystemSpec) -> float:
    gpu = system.gpu if isinstance(system.gpu, str) else system.gpu.name
    return storage.host_link(gpu).bw


def engine_sleep_wake(system: SystemSpec, engine_bytes: float) -> tuple[float, float]:
    """(sleep_s, wake_s) of a rollout engine holding ``engine_bytes`` of weights per GPU at
    vLLM's sleep level 1: CuMemAllocator copies them to page-locked host memory and back
    over the GPU's host link, each event fixed_s + bytes / (link_share x line rate)
    (hw_models/data/engines.yaml vllm_sleep, fitted on vLLM's published A100 timings by
    calibration/vllm_sleep_check.py)."""
    bw = _host_bw(system)
    c = catalog.vllm_sleep()
    return tuple(c[ev]["fixed_s"] + engine_bytes / (c[ev]["link_share"] * bw)
                 for ev in ("sleep", "wake"))


def offload(sc: Scenario, system: SystemSpec, pools: PoolSizes) -> dict:
    """Colocated only: (onload_s, offload_s) of one step over the GPU's host link. The
    16-bit weights go to a page-locked host buffer and back at the link's line rate
    (Megatron's param_data_cpu); the optimizer states move with ``.to("cpu")`` /
    ``.to("cuda")`` (NeMo RL megatron_policy_worker.move_optimizer), to and from pageable
    host memory, at the line rate / storage.pageable_slowdown(). The rollout engine sleeps
    with the onload and wakes with the offload (engine_sleep_wake)."""
    w: RLWorkload = sc.workload
    if not pools.colocated:
        return {"onload_s": 0.0, "offload_s": 0.0, "offload_bytes_per_gpu": 0.0,
                "engine_sleep_s": 0.0}
    p = w.train.parallel
    plan = _train_plan(w, pools)
    weights = optimizer = frozen = 0.0
    for ps in steps.PASSES[w.algorithm]:
        role = ps.role
        model = resolve(role_ref(w, role))
        stage = max(memory.memory_per_stage(model, plan, 4, True),
                    key=lambda m: m.weights + m.optimizer)
        if ps.train:
            weights += stage.weights
            optimizer += stage.optimizer
        elif role == "reward":      # the reference is swapped in its pass (reference_swap)
            frozen += model.params * 2 / (p.tp * p.pp * (p.ep if model.is_moe else 1))
    rp = w.rollout.parallel
    policy = resolve(w.model)
    engine = policy.params * WEIGHT_BYTES[w.rollout_precision] / (rp.tp * rp.pp * rp.ep)
    bw = _host_bw(system)
    pageable = optimizer * storage.pageable_slowdown() / bw
    sleep, wake = engine_sleep_wake(system, engine)
    return {"onload_s": (weights + frozen) / bw + sleep + pageable,
            "offload_s": weights / bw + wake + pageable,
            "offload_bytes_per_gpu": weights + optimizer, "engine_sleep_bytes_per_gpu": engine,
            "engine_sleep_s": sleep, "engine_wake_s": wake,
            "optimizer_pageable_bytes_per_gpu": optimizer}


def reference_swap(sc: Scenario, system: SystemSpec, pools: PoolSizes) -> float:
    """Seconds the reference log-prob pass spends swapping weights over the host link, on
    any placement: NeMo RL's megatron_policy_worker.use_reference_model copies the policy's
    16-bit shard to host memory, loads the reference shard from host memory and loads the
    policy back afterwards, three copies of the shard; all three are page-locked
    (``non_blocking`` copies to the CPU land in pinned memory, and the reference state dict
    was made that way, nemo_rl/models/megatron/setup.py), so at the link's line rate."""
    w: RLWorkload = sc.workload
    if not any(ps.role == "reference" for ps in steps.PASSES[w.algorithm]):
        return 0.0
    ref = resolve(role_ref(w, "reference"))
    shard = max(m.weights for m in memory.memory_per_stage(ref, _train_plan(w, pools), 4, True))
    return 3 * shard / _host_bw(system)


def role_ref(w: RLWorkload, role: str):
    if role == "critic" and w.critic_model is not None:
        return w.critic_model
    if role == "reward" and w.reward_model is not None:
        return w.reward_model
    return w.model
