"""Serving hybrid Mamba models (Nemotron 3 Nano): per-sequence Mamba state beside the
attention layers' paged KV, the memory planner counting both, the decode state traffic,
prefill linear in tokens, and whole runs through the CLI."""

from __future__ import annotations

import math

import pytest

from hw_models import catalog, profile
from hw_models.compute import ComputeModel
from sim.network import AnalyticalNetwork, ClusterLayout
from sim.scenario import apply_overrides, parse
from sim.serving.hybrid_iteration import HybridIterationModel
from sim.serving.moe_iteration import MoEIterationModel
from sim.simulate_inference import kv_blocks, seq_blocks, simulate_inference
from tests.sim.hardening_helpers import cli, one_error_line
from workloads.inference.ops import Shape, bucketed
from workloads.model import resolve

EXAMPLE = "examples/inference_nemotron3_nano.yaml"
GIB = 2**30


def _system():
    s = catalog.system("dgx-h100")
    prof = profile.load(s.gpu_spec.profile)
    return s, prof, AnalyticalNetwork(ClusterLayout(s, 1, s.nic_gbps), prof)


def nano(tp=1, pp=1, precision="bf16"):
    s, prof, net = _system()
    return HybridIterationModel(resolve("nemotron-3-nano"), tp, pp, precision,
                                ComputeModel(s.gpu_spec, prof), net)


def _scenario(overrides=()):
    import yaml
    with open(EXAMPLE) as f:
        data = yaml.safe_load(f)
    return parse(apply_overrides(data, list(overrides)), "nano")


def test_state_bytes_per_sequence_by_hand():
    """Nemotron 3 Nano: 23 Mamba layers of 64 heads x 64 head_dim, 8 groups, state 128,
    conv width 4. Per layer, TP 1: conv (4 - 1) x (4096 + 2 x 8 x 128) x 2 bytes = 36,864;
    SSM 64 x 64 x 128 x 4 bytes (fp32) = 2,097,152. TP 2 halves both."""
    conv, ssm = 3 * (64 * 64 + 2 * 8 * 128) * 2, 64 * 64 * 128 * 4
    assert (conv, ssm) == (36_864, 2_097_152)
    it = nano()
    assert it.conv_state_bytes() == conv and it.ssm_state_bytes() == ssm
    assert it.state_bytes_per_seq() == 23 * (conv + ssm) == 49_082_368      # ~46.8 MiB
    assert nano(tp=2).state_bytes_per_seq() == 23 * (conv + ssm) / 2


def test_only_attention_layers_hold_kv():
    """6 attention layers x K and V x 2 KV heads x 128 x 2 bytes = 6,144 bytes per token
    (TP 2: one KV head per GPU); pp 2 keeps the stage with the most layers of each kind."""
    assert nano().kv_bytes_per_token() == 6 * 2 * 2 * 128 * 2 == 6144
    assert nano(tp=2).kv_bytes_per_token() == 3072
    it = nano(pp=2)
    first, second = it.model.hybrid_pattern[:26], it.model.hybrid_pattern[26:]
    assert it.state_bytes_per_seq() == max(first.count("M"), second.count("M")) * (36_864 + 2_097_152)
    assert it.kv_bytes_per_token() == max(first.count("*"), second.count("*")) * 2 * 2 * 128 * 2


def test_sequences_that_fit_on_one_h100_vs_an_attention_model():
    """One H100 (80 GiB) at gpu_memory_utilization 0.9, 4096-token sequences, blocks of 16:
    Nano's sequence holds 4096 / 16 = 256 KV blocks of 16 x 6,144 bytes plus
    ceil(49,082,368 / 98,304) = 500 blocks of Mamba state; Qwen3-30B-A3B (48 attention
    layers, 4 KV heads of 128) holds 256 blocks of 16 x 98,304 bytes. Nano fits > 4x more."""
    sc = _scenario()
    w = sc.workload
    it = nano()
    assert seq_blocks(w, it) == math.ceil(49_082_368 / (16 * 6144)) == 500
    free = 80 * GIB * 0.9 - it.model.params * 2
    blocks = kv_blocks(w, it, 80 * GIB)
    assert blocks == int(free // (16 * 6144))
    nano_seqs = blocks // (256 + 500)
    s, prof, net = _system()
    qwen = MoEIterationModel(resolve("qwen3-30b-a3b"), 1, 1, "bf16", ComputeModel(s.gpu_spec, prof), net)
    assert qwen.kv_bytes_per_token() == 48 * 2 * 4 * 128 * 2 == 98_304
    q_blocks = int((80 * GIB * 0.9 - qwen.model.params * 2) // (16 * 98_304))
    assert kv_blocks(w, qwen, 80 * GIB) == q_blocks
    qwen_seqs = q_blocks // 256
    assert nano_seqs > 4 * qwen_seqs > 0


def test_decode_state_traffic_by_hand():
    """A decode step of 64 sequences, per Mamba layer, TP 1: causal_conv1d_update reads and
    writes each conv state (2 x 36,864) and its 6,144 channels in and out (2 x 2 x 6,144);
    selective_state_update reads and writes each fp32 SSM state (2 x 2,097,152) plus x, z,
    y (3 x 4096), dt (64), B and C (2 x 8 x 128) in 16-bit."""
    ops = {o.name: o for o in nano().mamba_ops(Shape(decode_seqs=64, decode_kv=64 * 2000, logits=64))}
    assert ops["mamba_conv1d_update"].bytes == 64 * (2 * 36_864 + 2 * 2 * 6144)
    assert ops["mamba_selective_state_update"].bytes == 64 * (2 * 2_097_152 + 2 * (3 * 4096 + 64 + 2048))
    assert "ssd_chunk_scan" not in ops                  # no scan without prefill tokens


def test_mamba_decode_does_not_grow_with_context_and_prefill_is_linear():
    """The Mamba layers' decode cost depends on the sequences, not their context (the
    attention layers' does); their prefill (conv + chunked scan) is linear in tokens, while
    attention's is quadratic."""
    it = nano()

    def mamba_time(s):
        return sum(it._costs.op_time(o) for o in it.mamba_ops(s))

    short, long = (Shape(decode_seqs=32, decode_kv=32 * c, logits=32) for c in (512, 65_536))
    assert mamba_time(short) == mamba_time(long)
    assert it.time(long) > it.time(short)
    p1, p8 = (Shape(n, n * (n + 1) // 2, n, 0, 0, 1, 1) for n in (4096, 32_768))
    assert mamba_time(p8) / mamba_time(p1) == pytest.approx(8, rel=0.1)
    attn = [sum(it._costs.op_time(o) for o in it.attention_ops_of(s, False)) for s in (p1, p8)]
    assert attn[1] / attn[0] > 30


@pytest.mark.parametrize(("tp", "pp"), [(1, 1), (2, 1), (2, 2)])
def test_composed_time_equals_engine(tp, pp):
    it = nano(tp, pp)
    s = bucketed(Shape(300, 300 * 301 // 2 + 300 * 700, 1000, 24, 24 * 1500, 25, 2), True)
    assert it.time(s) == pytest.approx(it.run_graph(s), rel=1e-9)


def test_simulate_nano_on_one_and_two_h100s(monkeypatch, capsys):
    for extra in ((), ("--set", "workload.parallel.tp=2")):
        code, out, err = cli(monkeypatch, capsys, "simulate", EXAMPLE, *extra)
        assert code == 0, err
        assert "ttft_ms" in out
    r = simulate_inference(_scenario())
    assert r.extra["state_blocks_per_seq"] == 500
    assert r.extra["mamba_state_mib_per_seq"] == pytest.approx(49_082_368 / 2**20)
    assert len(r.requests) == 400 and r.requests.finish_s.notna().all()


@pytest.mark.parametrize(("override", "message"), [
    ("workload.parallel.ep=2", "ep > 1 with a hybrid Mamba model"),
    ("workload.kv_cache.gpu_memory_utilization=0.7", "leaving no room"),
])
def test_bad_hybrid_plans_exit_2_in_one_line(monkeypatch, capsys, override, message):
    code, _, err = cli(monkeypatch, capsys, "simulate", EXAMPLE, "--set", override)
    assert code == 2, err
    assert message in one_error_line(err)


def test_paged_cache_counts_the_state_blocks_once_per_sequence():
    """A sequence of 40 tokens in blocks of 16 holds 3 KV blocks + 500 state blocks; it
    grows by KV blocks only; release frees all of it."""
    from workloads.inference.kv_cache import PagedKVCache
    from workloads.inference.requests import Request
    kv = PagedKVCache(1100, 16, seq_blocks=500)
    assert kv.blocks_for(40) == 503 and kv.blocks_for(0) == 0
    req = Request(0, 0.0, 40, 10)
    assert kv.grow(req, 40) and kv.used == 503
    assert kv.grow(req, 49) and kv.used == 504
    assert not kv.grow(Request(1, 0.0, 1600, 10), 1600)   # 100 + 500 > 596 free
    kv.release(req)
    assert kv.used == 0


def test_fast_forward_is_exact_with_state_blocks(monkeypatch, decode_runs):
    """Decode runs played in one go give the iterations of playing them one by one, with
    the pool held in Mamba state blocks (1,040 blocks: two sequences and their growth, then preemptions)."""
    import numpy as np

    from sim.serving import fast_forward
    over = ["workload.requests={count: 24, arrival: burst, prompt_len: 200, seed: 3, "
            "output_len: {dist: lognormal, median: 150, sigma: 0.8, high: 1500}}",
            "workload.kv_cache.blocks=1040"]
    fast = simulate_inference(_scenario(over))
    assert any(decode_runs) and fast.metrics["preemptions"] > 0
    monkeypatch.setattr(fast_forward, "MIN_RUN", 10**9)
    slow = simulate_inference(_scenario(over))
    assert fast.metrics == slow.metrics
    assert np.array_equal(fast.iterations.sort_values(["replica", "start_s"]).to_numpy(),
                          slow.iterations.sort_values(["replica", "start_s"]).to_numpy())


def test_rl_rollouts_of_nemotron_3_nano_run(monkeypatch, capsys):
    """An RL step whose policy is the hybrid model: its rollouts go through the serving
    simulator (TP 2 rollouts, EP 8 training) and the step is priced."""
    code, out, err = cli(monkeypatch, capsys, "simulate", "examples/rl_grpo_llama3_8b.yaml",
                         "--set", "workload.model=nemotron-3-nano",
                         "--set", "workload.prompts_per_step=8", "--set", "workload.samples_per_prompt=8",
                         "--set", "workload.rollout.parallel.tp=2",
                         "--set", "workload.train.parallel.ep=8",
                         "--set", "workload.train.global_batch=64",
                         "--set", "workload.train.grad_reduce_bytes=2", limit_s=120)
    assert code == 0, err
    assert "generation" in out


def test_a_single_group_is_replicated_over_tp_and_other_splits_are_refused():
    """vLLM's MambaMixer2: tp must divide the groups unless there is one, which every TP rank
    then holds (extra_groups_for_head_shards: tp - 1 more). One group at TP 2: conv state
    (4 - 1) x (4096 / 2 + 2 x 1 x 128) x 2 bytes = 13,824 per layer; 8 groups at TP 16: refused."""
    from hw_models.errors import InfeasiblePlanError
    from workloads.inference.hybrid_ops import check_hybrid_plan
    m = resolve("nemotron-3-nano")
    one = m.model_copy(update={"mamba": m.mamba.model_copy(update={"groups": 1})})
    s, prof, net = _system()
    it = HybridIterationModel(one, 2, 1, "bf16", ComputeModel(s.gpu_spec, prof), net)
    assert it.conv_state_bytes() == 3 * (4096 // 2 + 2 * 128) * 2 == 13_824
    check_hybrid_plan(m, 8, 1)
    with pytest.raises(InfeasiblePlanError, match="tp=16 must divide the Mamba groups"):
        check_hybrid_plan(m, 16, 1)
