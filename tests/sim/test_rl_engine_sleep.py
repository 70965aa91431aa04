"""The colocated rollout engine's sleep and wake (sim/rl_sync.py engine_sleep_wake):
fixed + weight bytes per GPU / (link share x the host link's line rate), engines.yaml
vllm_sleep, checked on hand cases."""

import pytest

from hw_models import catalog
from sim import rl_sync, scenario
from sim.rl import simulate_rl
from workloads.model import resolve

WAKE_FIXED, WAKE_SHARE = 0.3553, 0.7657      # engines.yaml vllm_sleep (vLLM blog, A100 fit)
SLEEP_FIXED, SLEEP_SHARE = 0.0598, 0.7119


def test_h100_engine_of_16_gb():
    # 16 GB of weights on an H100 (PCIe 5.0 x16, 63 GB/s): wake 0.3553 + 16 / (0.7657 x 63)
    # = 0.3553 + 0.3317 = 0.687 s; sleep 0.0598 + 16 / (0.7119 x 63) = 0.0598 + 0.3567.
    sleep, wake = rl_sync.engine_sleep_wake(catalog.system("dgx-h100"), 16e9)
    assert wake == pytest.approx(WAKE_FIXED + 16 / (WAKE_SHARE * 63.0), abs=1e-3)
    assert wake == pytest.approx(0.687, abs=1e-3)
    assert sleep == pytest.approx(SLEEP_FIXED + 16 / (SLEEP_SHARE * 63.0), abs=1e-3)


def test_a100_engine_reproduces_the_30b_measurement():
    # Qwen3-Coder-30B-A3B in BF16 (61.06 GB) on an A100: 2.89 s priced, 2.85-2.89 s measured.
    sleep, wake = rl_sync.engine_sleep_wake(catalog.system("dgx-a100"), 61.06e9)
    assert 2.85 <= wake <= 2.895
    assert sleep == pytest.approx(2.78, abs=0.01)


def test_colocated_step_carries_the_engine_wake_in_its_offload():
    """Llama 3 8B, rollout TP 1 (its whole 16 GB bf16) on 8 H100, GRPO (no frozen model
    loaded): the offload after the passes less the onload before them is the engine's wake
    less its sleep (the training states move the same bytes both ways)."""
    sc = scenario.parse({"name": "rl-sleep", "cluster": {"system": "dgx-h100", "nodes": 1},
                         "workload": {
        "kind": "rl", "algorithm": "grpo", "model": "llama3-8b", "prompts_per_step": 4,
        "samples_per_prompt": 4, "prompt_len": 128,
        "response_len": {"dist": "uniform", "low": 32, "high": 512},
        "rollout": {"parallel": {"tp": 1}, "kv_cache": {"gpu_memory_utilization": 0.6}},
        "train": {"global_batch": 8, "parallel": {"tp": 2}, "max_seq_len": 1024}}})
    res = simulate_rl(sc)
    sleep, wake = rl_sync.engine_sleep_wake(catalog.system("dgx-h100"),
                                            resolve("llama3-8b").params * 2)
    assert res.extra["engine_sleep_s"] == pytest.approx(sleep, rel=1e-9)
    onload = res.extra["onload_s"]
    offload = res.metrics["offload_s"] - onload
    assert offload - onload == pytest.approx(wake - sleep, rel=1e-6)
