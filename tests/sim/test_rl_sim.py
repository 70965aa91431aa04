"""One simulated RL step on tiny cases, checked against hand compositions of its phases."""

import sys

import pytest

from hw_models import catalog, storage
from sim import scenario
from sim.rl import simulate_rl
from sim.simulate import simulate
from sim.simulate_inference import simulate_inference
from workloads.model import resolve


def make(**w):
    base = {"kind": "rl", "algorithm": "grpo", "model": "llama3-8b", "prompts_per_step": 4,
            "samples_per_prompt": 4, "prompt_len": 128,
            "response_len": {"dist": "uniform", "low": 32, "high": 512},
            "rollout": {"parallel": {"tp": 1}, "kv_cache": {"gpu_memory_utilization": 0.6}},
            "train": {"global_batch": 8, "parallel": {"tp": 2}, "max_seq_len": 1024}} | w
    return scenario.parse({"name": "rl-test", "cluster": {"system": "dgx-h100", "nodes": 1},
                           "workload": base})


@pytest.fixture(scope="module")
def colocated():
    return simulate_rl(make())


def test_colocated_step_is_the_sum_of_its_phases(colocated):
    m = colocated.metrics
    total = m["generation_s"] + m["logprob_s"] + m["train_s"] + m["weight_sync_s"] + m["offload_s"]
    assert m["step_time_s"] == pytest.approx(total, rel=1e-12)
    # One pool: the timeline's phases follow one another without gaps.
    t = colocated.timeline
    assert (t.start_s.iloc[1:].to_numpy() == pytest.approx(t.end_s.iloc[:-1].to_numpy()))


def test_generation_is_the_serving_simulator_on_a_burst(colocated):
    sc = scenario.parse({"cluster": {"system": "dgx-h100", "nodes": 1}, "workload": {
        "kind": "inference", "model": "llama3-8b", "precision": "bf16", "replicas": 8,
        "kv_cache": {"gpu_memory_utilization": 0.6},
        "engine_host": "vllm-v1",      # the rollout engine's defaults (docs/rl.md)
        "sampler": "vllm-v1-logprobs",
        "requests": {"count": 16, "arrival": "burst", "prompt_len": 128,
                     "output_len": {"dist": "uniform", "low": 32, "high": 512}, "seed": 0}}})
    res = simulate_inference(sc)
    assert colocated.metrics["generation_s"] == pytest.approx(res.requests.finish_s.max())
    tokens = int((res.requests.prompt_len + res.requests.output_len).sum())
    assert colocated.metrics["step_tokens"] == tokens


def test_train_pass_is_the_training_simulator():
    # 16 samples of 128 + 256 tokens, global_batch 8: two optimizer steps; each packs its 8
    # sequences two to a row of 1024 tokens (768 used): 4 rows, a multiple of dp = 8 / tp 2.
    res = simulate_rl(make(response_len=256))
    x = res.extra
    assert x["optimizer_steps"] == 2 and x["row_len"] == 1024 and x["packed_rows"] == 8
    one = scenario.parse({"cluster": {"system": "dgx-h100", "nodes": 1}, "workload": {
        "kind": "training", "model": "llama3-8b", "seq_len": 1024, "global_batch": 4,
        "micro_batch": 1, "precision": "bf16", "parallel": {"tp": 2, "zero": 1},
        "recompute": "selective", "logprob_loss": True}})   # the policy's log-prob head
    t_one = simulate(one, band=False).iteration_time_s
    assert res.metrics["passes"]["policy_train"] == pytest.approx(2 * t_one, rel=1e-9)


def test_colocated_sync_and_offload_bytes_by_hand(colocated):
    m = resolve("llama3-8b")
    # Training TP2 -> rollout TP1 on the same GPU: it holds half of the weights, receives
    # the other half (bf16).
    assert colocated.extra["sync_bytes_per_gpu"] == pytest.approx(m.params * 2 / 2, rel=1e-12)
    sys_ = catalog.system("dgx-h100")
    t = colocated.metrics["weight_sync_s"] - colocated.extra["sync_tensor_s"]
    assert m.params / sys_.scale_up_bw < t < 3 * m.params / sys_.scale_up_bw
    # Onload and offload of 16-bit weights (pinned host buffer, line rate) + fp32 master and
    # Adam moments sharded over dp 4 (ZeRO-1; NeMo RL's .to("cpu") / .to("cuda"): pageable,
    # 4.5x slower), per GPU of TP2. The rollout engine (TP1, vLLM sleep level 1) copies its
    # whole bf16 weights to the host and back: fixed + bytes / (share x line rate) each way
    # (engines.yaml vllm_sleep).
    p = m.params / 2
    weights, optimizer = p * 2, p * 12 / 4
    engine = m.params * 2
    host = storage.host_link("h100-sxm").bw
    assert storage.pageable_slowdown() == 4.5
    assert colocated.extra["offload_bytes_per_gpu"] == pytest.approx(weights + optimizer, rel=1e-5)
    c = catalog.vllm_sleep()
    engine_s = sum(c[ev]["fixed_s"] + engine / (c[ev]["link_share"] * host)
                   for ev in ("sleep", "wake"))
    assert colocated.metrics["offload_s"] == pytest.approx(
        2 * weights / host + engine_s + 2 * optimizer * 4.5 / host, rel=1e-5)


@pytest.mark.parametrize("placement", ["colocated", {"rollout_gpus": 4, "train_gpus": 4}])
def test_reference_pass_swaps_the_weights_through_host_memory(placement):
    # NeMo RL's use_reference_model: the policy's bf16 shard out, the reference in, the
    # policy back, over the pinned host link; the forward itself costs what the policy's
    # does (same shape). TP2: half of Llama 3 8B's bf16 weights per GPU.
    res = simulate_rl(make(placement=placement))
    passes = res.metrics["passes"]
    swap = 3 * resolve("llama3-8b").params / 2 * 2 / storage.host_link("h100-sxm").bw
    assert res.extra["reference_swap_s"] == pytest.approx(swap, rel=1e-5)
    assert passes["reference_logprob"] == pytest.approx(
        passes["policy_logprob"] + res.extra["reference_swap_s"], rel=1e-12)
    dapo = simulate_rl(make(algorithm="dapo", placement=placement))
    assert dapo.extra["reference_swap_s"] == 0.0


def test_off_policy_one_hides_the_shorter_phase():
    split = {"rollout_gpus": 4, "train_gpus": 4}
    on = simulate_rl(make(placement=split)).metrics
    off = simulate_rl(make(placement=split, off_policy_steps=1)).metrics
    g, w, s = on["generation_s"], on["logprob_s"] + on["train_s"], on["weight_sync_s"]
    assert off["generation_s"] == g and off["train_s"] == on["train_s"]
    assert on["step_time_s"] == pytest.approx(g + w + s)
    assert off["step_time_s"] == pytest.approx(max(g, w) + s)
    # the pool that finishes first waits (4 GPUs x the difference), plus rollout stragglers
    assert off["idle_s"] >= 4 * abs(g - w) - 1e-9
    assert on["idle_s"] >= 4 * (g + w) - 1e-9


def test_separate_pool_sync_receives_the_whole_rollout_shard():
    m = resolve("llama3-8b")
    res = simulate_rl(make(placement={"rollout_gpus": 4, "train_gpus": 4},
                           rollout={"parallel": {"tp": 2}}))
    assert res.extra["sync_bytes_per_gpu"] == pytest.approx(m.params * 2 / 2)


def test_dapo_does_not_wait_for_the_abandoned_groups():
    grpo = simulate_rl(make(prompts_per_step=8)).metrics
    dapo = simulate_rl(make(algorithm="dapo", prompts_per_step=4,
                            rollout={"parallel": {"tp": 1}, "oversample": 2.0,
                                     "kv_cache": {"gpu_memory_utilization": 0.6}})).metrics
    # same 32 requests generated; DAPO stops when 4 of the 8 groups are complete
    assert dapo["generation_s"] < grpo["generation_s"]
    assert "reference_logprob" not in dapo["passes"]


@pytest.mark.parametrize("override, words", [
    ("workload.placement={rollout_gpus: 8, train_gpus: 8}", "cluster has 8"),
    ("workload.model=llama3-70b", "rollout: weights take"),
    ("workload.samples_per_prompt=0", "samples_per_prompt"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys, override, words):
    import yaml

    from sim.cli.main import main
    path = tmp_path / "rl.yaml"
    path.write_text(yaml.safe_dump(make().model_dump(mode="json")))
    monkeypatch.setattr(sys, "argv", ["clustersim", "simulate", str(path), "--set", override])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and words in err and len(err.splitlines()) == 1


def test_logprob_pass_is_forward_only():
    # One stage: the pass is m microbatches of embedding + layers + head forward, back to
    # back, nothing else (no backward, no optimizer, no gradient sync).
    from sim.costs import OpCosts
    from sim.rl import forward_time
    from sim.setup import make_network, paced_compute, resolve_setup
    from workloads.graph import CommGroup
    from workloads.layers import LayerContext, embedding_forward, head_forward, layer_forward
    sub = scenario.parse({"cluster": {"system": "dgx-h100", "nodes": 1}, "workload": {
        "kind": "training", "model": "llama3-8b", "seq_len": 1024, "global_batch": 24,
        "micro_batch": 1, "parallel": {"tp": 2}}})
    setup = resolve_setup(sub)
    ctx = LayerContext(setup.model, 1, 2, False, "bf16", CommGroup((0, 1), "tp"))
    ops = embedding_forward(ctx) + layer_forward(ctx) * setup.model.layers + head_forward(ctx)
    costs = OpCosts(paced_compute(setup.gpu, setup.profile, 1.0, setup.layout.world_size),
                    make_network(setup))
    # dp = 4: 24 rows are 6 microbatches per replica
    assert forward_time(sub, None) == pytest.approx(6 * sum(costs.op_time(o) for o in ops), rel=1e-9)


def test_rl_sweep_ranks_placements(tmp_path):
    from sim.sweep import run, spec
    base = make().model_dump(mode="json")
    base["sim"] = {"fidelity": "analytical"}
    sweep = spec.parse({"base": base, "axes": {"workload.placement": [
        "colocated", {"rollout_gpus": 4, "train_gpus": 4}, {"rollout_gpus": 3, "train_gpus": 4}]}})
    out = run.run(sweep, run.Options(out=str(tmp_path / "s.parquet"), progress=False))
    assert out["evaluated"] == 3 and out["feasible"] == 2 and out["rejected"] == {"infeasible": 1}
    best = out["top"][0]
    # the ranking rate is the step's tokens per second; it matches a direct simulation
    direct = simulate_rl(scenario.parse(out["best"]["scenario"])).metrics
    assert best["iteration_time_s"] == pytest.approx(direct["step_time_s"])


def test_json_output_has_the_contract_keys(tmp_path, monkeypatch, capsys, colocated):
    import json

    import yaml

    from sim.cli.main import main
    path = tmp_path / "rl.yaml"
    path.write_text(yaml.safe_dump(make().model_dump(mode="json")))
    monkeypatch.setattr(sys, "argv", ["clustersim", "simulate", str(path), "--format", "json"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 0
    out = json.loads(capsys.readouterr().out)
    for k in ("step_time_s", "generation_s", "logprob_s", "train_s", "weight_sync_s", "idle_s",
              "tokens_per_s_per_gpu", "tokens_per_s_per_gpu_definition", "timeline"):
        assert k in out
    assert {"pool", "phase", "start_s", "end_s", "gpus"} <= set(out["timeline"][0])
    # deterministic for a given scenario and seed
    assert out["step_time_s"] == colocated.metrics["step_time_s"]


def test_checkpoint_sync_by_hand():
    # One DGX H100 node, selene-lustre (docs/reliability.md): one client node writes the
    # 16-bit policy at 50 GB/s per client, then the 8 TP1 replicas read 8 copies at 50 GB/s;
    # 1 ms latency per transfer.
    res = simulate_rl(make(sync="checkpoint"))
    p = resolve("llama3-8b").params
    # plus the per-tensor refit cost: llama3-8b's 291 tensors at 165.6 us (engines.yaml)
    assert res.metrics["weight_sync_s"] == pytest.approx(
        2e-3 + p * 2 / 50e9 + 8 * p * 2 / 50e9 + 291 * 165.6e-6)


def test_ppo_adds_critic_and_reward_passes():
    m = simulate_rl(make(algorithm="ppo")).metrics
    p = m["passes"]
    assert list(p) == ["policy_logprob", "reference_logprob", "critic_values", "reward_score",
                       "policy_train", "critic_train"]
    # critic and reward model default to the policy's shape: their passes cost the same,
    # less the policy's per-token log-probability head (a value or a score has no
    # log-softmax over the vocabulary)
    assert p["critic_values"] == p["reward_score"] < p["policy_logprob"]
    assert p["critic_train"] < p["policy_train"]
    assert p["critic_train"] > 0.9 * p["policy_train"]
    assert m["train_s"] == pytest.approx(p["policy_train"] + p["critic_train"])


def test_rollout_context_is_the_steps_longest_sequence():
    # llama3-8b's preset seq_len is 8192; 256 + up to 9000 tokens is served with a 9256-token
    # context (vLLM's max_model_len as RL frameworks set it), not refused.
    res = simulate_rl(make(prompts_per_step=1, samples_per_prompt=2,
                           response_len={"dist": "uniform", "low": 8500, "high": 9000},
                           train={"global_batch": 2, "parallel": {"tp": 8}}))
    assert res.metrics["generated_tokens"] >= 17000 and res.extra["row_len"] > 8192


def test_moe_policy_with_expert_parallel_rollout_and_training():
    m = resolve("qwen3-30b-a3b")
    res = simulate_rl(make(model="qwen3-30b-a3b",
                           rollout={"parallel": {"tp": 1, "ep": 2},
                                    "kv_cache": {"gpu_memory_utilization": 0.6}},
                           train={"global_batch": 8, "parallel": {"tp": 1, "ep": 8},
                                  "max_seq_len": 1024, "recompute": "full"}))
    assert res.extra["rollout_replicas"] == 4                 # 8 GPUs / (ep 2 x tp 1)
    # Experts split the matrices: a rollout GPU needs half the bf16 weights (ep 2); the one
    # whose eighth (training ep 8) lies outside that half receives all of it.
    assert res.extra["sync_bytes_per_gpu"] == pytest.approx(m.params * 2 / 2)


def test_train_pass_with_context_parallelism():
    # cp 2 splits each 1024-token row over two GPUs, so dp = 8 / (tp 2 x cp 2) = 2; each of
    # the two optimizer steps (4 packed rows) is one iteration of the training simulator
    # with that plan. The distributed optimizer shards over dp x cp = 4, as without cp.
    train = {"global_batch": 8, "parallel": {"tp": 2, "cp": 2}, "max_seq_len": 1024}
    res = simulate_rl(make(response_len=256, train=train))
    one = scenario.parse({"cluster": {"system": "dgx-h100", "nodes": 1}, "workload": {
        "kind": "training", "model": "llama3-8b", "seq_len": 1024, "global_batch": 4,
        "micro_batch": 1, "precision": "bf16", "parallel": {"tp": 2, "cp": 2, "zero": 1},
        "recompute": "selective", "logprob_loss": True}})
    t_one = simulate(one, band=False).iteration_time_s
    assert res.metrics["passes"]["policy_train"] == pytest.approx(2 * t_one, rel=1e-9)
    p = resolve("llama3-8b").params / 2
    assert res.extra["offload_bytes_per_gpu"] == pytest.approx(p * 2 + p * 12 / 4, rel=1e-5)


def test_rollout_tensor_parallel_over_two_nodes():
    # tp 16 on DGX H100 spans two NVLink domains (vLLM multi-node TP): one replica of 16
    # GPUs, whose generation is the serving simulator's with that plan.
    sc = make(rollout={"parallel": {"tp": 16}, "kv_cache": {"gpu_memory_utilization": 0.6}},
              placement={"rollout_gpus": 16, "train_gpus": 8},
              train={"global_batch": 8, "parallel": {"tp": 8}, "max_seq_len": 1024})
    data = sc.model_dump(mode="json", exclude_none=True)
    data["cluster"]["nodes"] = 3
    res = simulate_rl(scenario.Scenario(**data))
    assert res.extra["rollout_replicas"] == 1
    inf = scenario.parse({"cluster": {"system": "dgx-h100", "nodes": 2}, "workload": {
        "kind": "inference", "model": "llama3-8b", "precision": "bf16", "replicas": 1,
        "parallel": {"tp": 16}, "kv_cache": {"gpu_memory_utilization": 0.6},
        "engine_host": "vllm-v1", "sampler": "vllm-v1-logprobs",
        "requests": {"count": 16, "arrival": "burst", "prompt_len": 128,
                     "output_len": {"dist": "uniform", "low": 32, "high": 512}, "seed": 0}}})
    assert res.metrics["generation_s"] == pytest.approx(
        simulate_inference(inf).requests.finish_s.max(), rel=1e-12)
