"""Decode runs played in one go (sim/serving/fast_forward.py) give exactly the results of
playing every iteration through the scheduler."""

import numpy as np
import pytest

from sim import scenario
from sim.serving import fast_forward
from sim.simulate_inference import simulate_inference


def burst(blocks=None, count=48, max_batch=256):
    kv = {"gpu_memory_utilization": 0.6} | ({"blocks": blocks} if blocks else {})
    return scenario.parse({"cluster": {"system": "dgx-h100", "nodes": 1}, "workload": {
        "kind": "inference", "model": "llama3-8b", "precision": "bf16", "replicas": 2,
        "scheduler": {"policy": "vllm", "max_batch": max_batch}, "kv_cache": kv,
        "requests": {"count": count, "arrival": "burst", "prompt_len": 200,
                     "output_len": {"dist": "lognormal", "median": 150, "sigma": 0.8,
                                    "high": 1500}, "seed": 3}}})


@pytest.mark.parametrize("kw", [{}, {"blocks": 300}, {"max_batch": 16}])
def test_fast_forward_is_exact(kw, monkeypatch, decode_runs):
    # blocks=300 (4,800 tokens) forces preemptions; max_batch 16 leaves requests waiting.
    runs = decode_runs
    fast = simulate_inference(burst(**kw))
    assert any(runs)                     # the shortcut was taken
    monkeypatch.setattr(fast_forward, "MIN_RUN", 10**9)
    slow = simulate_inference(burst(**kw))
    cols = ["id", "replica", "ttft_s", "finish_s", "output_len"]
    a, b = fast.requests.sort_values("id")[cols], slow.requests.sort_values("id")[cols]
    assert np.array_equal(a.to_numpy(), b.to_numpy())
    assert fast.metrics == slow.metrics
    ia = fast.iterations.sort_values(["replica", "start_s"]).to_numpy()
    ib = slow.iterations.sort_values(["replica", "start_s"]).to_numpy()
    assert np.array_equal(ia, ib)
