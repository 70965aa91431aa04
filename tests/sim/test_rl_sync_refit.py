"""RL weight refit: the NCCL broadcast across nodes and the per-tensor refit cost, by hand."""

import pytest

from hw_models import catalog, profile
from sim import rl_sync, scenario
from sim.network import AnalyticalNetwork, ClusterLayout
from sim.network.analytical import curve_time
from sim.rl import simulate_rl
from workloads.graph import CommGroup
from workloads.model import resolve


def test_hf_tensor_counts_by_hand():
    # DeepSeek-V3: 3 dense layers x (7 MLA tensors: q_a_proj, q_a_layernorm, q_b_proj,
    # kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj, o_proj + 2 norms + gate/up/down) = 36;
    # 58 MoE layers x (7 + 2 + 256 experts x 3 + 1 shared x 3 + gate + e_score_correction_bias)
    # = 58 x 782 = 45,356; embedding, final norm, lm_head: 3. Total 45,395, the count NeMo RL
    # published for each vLLM rank of its DeepSeek-V3 refit (checkpoint-engine-refit.md).
    assert rl_sync.hf_tensor_count(resolve("deepseek-v3")) == 3 * 12 + 58 * 782 + 3 == 45395
    # Qwen3-30B-A3B: 48 x (q, k, v, o, q_norm, k_norm, 2 norms, router, 128 x 3) + 3
    assert rl_sync.hf_tensor_count(resolve("qwen3-30b-a3b")) == 48 * (4 + 2 + 2 + 1 + 384) + 3
    # Llama 3 8B: 32 x (4 attention + 2 norms + 3 MLP) + embedding, norm, lm_head = 291
    assert rl_sync.hf_tensor_count(resolve("llama3-8b")) == 291
    # GPT-3-style (LayerNorm weight + bias, biased linears, learned positions, tied output):
    # per layer 8 attention + 4 norm + 4 MLP tensors; then word + position embeddings + final norm
    m = resolve({"layers": 2, "hidden": 64, "heads": 4, "vocab": 100, "seq_len": 32})
    assert rl_sync.hf_tensor_count(m) == 2 * 16 + 2 + 2


def test_refit_constant_is_its_derivation():
    # engines.yaml weight_refit: NeMo RL's NIXL sharded async refit (9.25 s, 69.95 GiB and
    # 45,395 tensors per vLLM rank) less 69.95 GiB over one H100 GPU's NIC share at the h100
    # profile's network curve, per tensor.
    system = catalog.system("dgx-h100")
    prof = profile.load(system.default_profile)
    nic = system.nics_per_node * system.nic_gbps * 1e9 / 8 / system.gpus_per_node
    transport = curve_time(prof.collectives["network"], 69.95 * 2**30, nic)
    assert catalog.refit_per_tensor_s(system) == pytest.approx((9.25 - transport) / 45395, rel=1e-3)
    # a Grace host runs the same host-side work 2.75x slower (engines.yaml host_cpus)
    gb = catalog.system("gb200-nvl72")
    assert catalog.refit_per_tensor_s(gb) == pytest.approx(
        catalog.refit_per_tensor_s(system) * catalog.host_cpu_factor(gb))


def test_broadcast_crosses_each_nodes_nics_once():
    # 2 DGX H100 nodes: 8 training GPUs on node 0, 8 rollout GPUs on node 1. NCCL's ring
    # broadcast over the 16 ranks enters node 1 once per channel, one NIC each: the bytes
    # cross at the node's 8 x 400 Gb/s = 400 GB/s (capped by NVLink's 450 GB/s), at the
    # profile's network efficiency; then NVLink carries them to the 8 GPUs. Not 8 copies
    # through one GPU's 50 GB/s NIC.
    sc = scenario.parse({"name": "toy", "cluster": {"system": "dgx-h100", "nodes": 2},
                         "workload": {"kind": "rl", "model": "llama3-8b", "sync": "broadcast",
                                      "rollout": {"parallel": {"tp": 1}},
                                      "train": {"parallel": {"tp": 1}},
                                      "placement": {"rollout_gpus": 8, "train_gpus": 8}}},
                        "toy")
    res = simulate_rl(sc)
    full = resolve("llama3-8b").params * 2
    system = catalog.system("dgx-h100")
    curve = profile.load(system.default_profile).collectives["network"]
    eff = curve.eff_max / (1 + (curve.bytes_half / full) ** curve.gamma)
    transport = res.metrics["weight_sync_s"] - res.extra["sync_tensor_s"]
    assert transport == pytest.approx(full / (400e9 * eff), rel=0.01)
    assert res.extra["sync_tensor_s"] == pytest.approx(291 * 165.6e-6, rel=1e-9)
    # the same group through the network model: a broadcast, not a point-to-point copy
    net = AnalyticalNetwork(ClusterLayout(system, 2, system.nic_gbps),
                            profile.load(system.default_profile))
    assert net.collective_time("broadcast", full, CommGroup(tuple(range(16)))) < \
        net.p2p_time(0, 8, full) / 6
