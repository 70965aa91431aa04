"""Off-policy steps whose rollouts stream across steps (NeMo RL's async GRPO, k >= 2),
checked against plain serving runs composed by hand."""

import pytest

from sim import rl_async, scenario
from sim.rl import simulate_rl
from sim.simulate_inference import simulate_inference

SPLIT = {"rollout_gpus": 2, "train_gpus": 4}     # 2 TP-1 rollout replicas


def make(k: int, response, max_batch: int = 256, prompts: int = 4, **w):
    base = {"kind": "rl", "algorithm": "grpo", "model": "llama3-8b", "prompts_per_step": prompts,
            "samples_per_prompt": 4, "prompt_len": 128, "response_len": response,
            "rollout": {"parallel": {"tp": 1}, "kv_cache": {"gpu_memory_utilization": 0.6},
                        "scheduler": {"policy": "vllm", "max_batch": max_batch}},
            "train": {"global_batch": 8, "parallel": {"tp": 2}, "max_seq_len": 4096},
            "placement": SPLIT, "off_policy_steps": k} | w
    return scenario.parse({"name": "rl-async", "cluster": {"system": "dgx-h100", "nodes": 1},
                           "workload": base})


def one_replica(count: int, response, max_batch: int = 256) -> float:
    """A plain serving run: ``count`` requests at once on one TP-1 replica, to the last."""
    sc = scenario.parse({"cluster": {"system": "dgx-h100", "nodes": 1}, "workload": {
        "kind": "inference", "model": "llama3-8b", "precision": "bf16", "replicas": 1,
        "kv_cache": {"gpu_memory_utilization": 0.6}, "engine_host": "vllm-v1",
        "sampler": "vllm-v1-logprobs",
        "scheduler": {"policy": "vllm", "max_batch": max_batch},
        "requests": {"count": count, "arrival": "burst", "prompt_len": 128,
                     "output_len": response, "seed": 0}}})
    return float(simulate_inference(sc).requests.finish_s.max())


def test_window_by_hand():
    # 16 requests a step on 2 replicas: a share of 8. The running set is
    # c = min(max_batch, k x 8) and m = ceil(c / 8) steps fill it.
    assert rl_async.window(make(8, 64, max_batch=8).workload, 2) == (8, 1)
    assert rl_async.window(make(3, 64).workload, 2) == (24, 3)
    assert rl_async.window(make(8, 64).workload, 2) == (64, 8)
    assert rl_async.window(make(8, 64, max_batch=20).workload, 2) == (20, 3)


def test_constant_lengths_stream_is_the_sum_of_the_steps_work():
    # Every response 256 tokens, each replica's batch limit (8) is one step's share (16 / 2):
    # c = 8, m = 1. There is no tail to hide, so two steps back to back cost two steps' work
    # and the steady-state step is one step's generation, as a plain serving run gives it.
    res = simulate_rl(make(4, 256, max_batch=8))
    one, two = one_replica(8, 256, 8), one_replica(16, 256, 8)
    assert res.extra["stream_steps"] == 1 and res.extra["stream_batch"] == 8
    assert res.extra["stream_bound"] == "throughput"
    assert two == pytest.approx(2 * one, rel=0.02)
    assert res.metrics["generation_s"] == pytest.approx(two - one, rel=1e-9)
    assert res.metrics["generation_s"] == pytest.approx(res.extra["single_step_generation_s"],
                                                        rel=0.02)


LONG_TAIL = {"dist": "lognormal", "median": 200, "sigma": 1.0, "high": 3000}


@pytest.fixture(scope="module")
def tailed():
    return {k: simulate_rl(make(k, LONG_TAIL)) for k in (0, 1, 2, 4)}


def test_long_tail_is_hidden_by_the_next_steps(tailed):
    res = tailed[4]
    m, x = res.metrics, res.extra
    # k = 4, share 8: c = min(256, 32) = 32, m = 4. Throughput: 8 steps' shares on one
    # replica running at most 32 sequences, minus 4 steps' shares, over 4.
    assert (x["stream_steps"], x["stream_batch"]) == (4, 32)
    by_hand = (one_replica(64, LONG_TAIL, 32) - one_replica(32, LONG_TAIL, 32)) / 4
    single = x["single_step_generation_s"]
    assert single == pytest.approx(tailed[0].metrics["generation_s"])
    assert x["stream_bound"] == "throughput" and by_hand > single / 4
    assert m["generation_s"] == pytest.approx(by_hand, rel=1e-9)
    # One step alone waits for its longest response; the stream hides that tail.
    assert m["generation_s"] < single - m["generation_tail_s"]
    assert m["generation_straggler_gpu_s"] == 0.0
    w, sync = m["logprob_s"] + m["train_s"], m["weight_sync_s"]
    assert m["step_time_s"] == pytest.approx(max(m["generation_s"], w) + sync)


def test_two_steps_of_slack_are_latency_bound(tailed):
    # k = 2: c = 16, m = 2; one step's generation to its last response must fit in two
    # steps, which here is longer than the throughput bound.
    m, x = tailed[2].metrics, tailed[2].extra
    by_hand = (one_replica(32, LONG_TAIL, 16) - one_replica(16, LONG_TAIL, 16)) / 2
    single = x["single_step_generation_s"]
    assert by_hand < single / 2
    assert x["stream_bound"] == "latency"
    assert m["generation_s"] == pytest.approx(single / 2, rel=1e-12)


def test_one_step_off_still_waits_for_its_tail_and_k_orders(tailed):
    # k = 1: NeMo RL generates only for the next weight version, then waits for the refit,
    # so each step's rollout runs to its own last response.
    on, one, two, four = (tailed[k].metrics for k in (0, 1, 2, 4))
    assert one["generation_s"] == on["generation_s"]
    assert "stream_steps" not in tailed[1].extra
    assert four["generation_s"] < two["generation_s"] < one["generation_s"]
    assert four["step_time_s"] <= two["step_time_s"] <= one["step_time_s"] <= on["step_time_s"]


def test_k8_against_k1_on_a_generation_bound_step():
    # Generation dominates (long responses, a small training batch): the 8-step-off step is
    # shorter than the 1-step-off one, which is its single step's generation + sync.
    r1 = simulate_rl(make(1, LONG_TAIL, prompts=8)).metrics
    r8 = simulate_rl(make(8, LONG_TAIL, prompts=8)).metrics
    assert r1["step_time_s"] == pytest.approx(
        max(r1["generation_s"], r1["logprob_s"] + r1["train_s"]) + r1["weight_sync_s"])
    assert r8["step_time_s"] < r1["step_time_s"]
    assert r8["generation_s"] < r1["generation_s"]
