"""DAPO's dynamic sampling as NeMo RL runs it: each generation batch is prompts_per_step x
batch_multiplier groups generated to the last response, prompts_per_step of them trained on;
gen_batches such batches per step."""

import sys

import pytest
import yaml

from sim import scenario
from sim.rl import simulate_rl
from sim.simulate_inference import simulate_inference


def make(**rollout):
    w = {"kind": "rl", "algorithm": "dapo", "model": "llama3-8b", "prompts_per_step": 2,
         "samples_per_prompt": 4, "prompt_len": 128,
         "response_len": {"dist": "uniform", "low": 32, "high": 512},
         "rollout": {"parallel": {"tp": 1}, "kv_cache": {"gpu_memory_utilization": 0.6}} | rollout,
         "train": {"global_batch": 8, "parallel": {"tp": 2}, "max_seq_len": 1024}}
    return scenario.parse({"name": "rl-bm", "cluster": {"system": "dgx-h100", "nodes": 1},
                           "workload": w})


def burst(count: int):
    """The rollout as a plain serving run: ``count`` requests at once on 8 TP-1 replicas."""
    sc = scenario.parse({"cluster": {"system": "dgx-h100", "nodes": 1}, "workload": {
        "kind": "inference", "model": "llama3-8b", "precision": "bf16", "replicas": 8,
        "kv_cache": {"gpu_memory_utilization": 0.6}, "engine_host": "vllm-v1",
        "sampler": "vllm-v1-logprobs",
        "requests": {"count": count, "arrival": "burst", "prompt_len": 128,
                     "output_len": {"dist": "uniform", "low": 32, "high": 512}, "seed": 0}}})
    return simulate_inference(sc).requests.sort_values("id")


@pytest.fixture(scope="module")
def tripled():
    return simulate_rl(make(batch_multiplier=3.0))


def test_the_multiplied_batch_is_generated_to_its_last_response(tripled):
    # 2 prompts x 3 = 6 groups of 4 = 24 requests in one burst; the step waits for all 24.
    req = burst(24)
    assert tripled.extra["generated_samples"] == 24
    assert tripled.metrics["generation_s"] == pytest.approx(req.finish_s.max())
    assert tripled.metrics["generated_tokens"] == int(req.output_len.sum())


def test_only_prompts_per_step_groups_are_trained_on(tripled):
    # The first 2 groups (requests 0-7) go on to the log-prob and training passes.
    req = burst(24)
    kept = req[req.id < 8]
    assert tripled.metrics["step_tokens"] == int((kept.prompt_len + kept.output_len).sum())
    assert tripled.extra["optimizer_steps"] == 1


def test_each_generation_batch_costs_the_first(tripled):
    twice = simulate_rl(make(batch_multiplier=3.0, gen_batches=2)).metrics
    m = tripled.metrics
    assert twice["generation_s"] == pytest.approx(2 * m["generation_s"], rel=1e-12)
    assert twice["step_time_s"] - m["step_time_s"] == pytest.approx(m["generation_s"], rel=1e-9)
    assert twice["train_s"] == m["train_s"]


@pytest.mark.parametrize("override, words", [
    ("workload.algorithm=grpo", "only algorithm: dapo"),
    ("workload.rollout.oversample=2", "set one of them"),
])
def test_batch_multiplier_bad_input_exits_2(tmp_path, monkeypatch, capsys, override, words):
    from sim.cli.main import main
    path = tmp_path / "rl.yaml"
    path.write_text(yaml.safe_dump(make(batch_multiplier=3.0).model_dump(mode="json")))
    monkeypatch.setattr(sys, "argv", ["clustersim", "simulate", str(path), "--set", override])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and words in err and len(err.splitlines()) == 1
