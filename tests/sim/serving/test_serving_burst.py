"""A burst of requests arriving at the same instant is batched together (issue: the
first request was prefilled alone and the other seven waited for its whole decode)."""

import pytest

from sim import scenario
from sim.simulate import simulate


def burst(policy: str, count: int = 8, output: int = 64) -> scenario.Scenario:
    return scenario.parse({
        "cluster": {"system": "dgx-h100", "nodes": 1},
        "workload": {"kind": "inference", "model": "llama2-70b", "parallel": {"tp": 2},
                     "scheduler": {"policy": policy, "max_batch": 8},
                     "requests": {"count": count, "arrival": "burst", "prompt_len": 512,
                                  "output_len": output}}})


@pytest.mark.parametrize("policy", ["static", "orca", "vllm"])
def test_burst_prefilled_in_one_iteration(policy):
    res = simulate(burst(policy))
    df = res.requests
    # all eight arrive at t=0, so the first iteration prefills all of them: one TTFT
    assert df.arrival_s.max() == 0.0
    assert df.ttft_s.nunique() == 1
    # static: 1 prefill iteration + 63 decode iterations for the one cohort of 8
    if policy == "static":
        assert len(res.iterations) == 64


def test_burst_ttft_is_one_batched_prefill():
    one = simulate(burst("static", count=1)).requests.ttft_s.iloc[0]
    eight = simulate(burst("static")).requests.ttft_s
    # a batch of 8 prompts of 512 tokens costs more than one, far less than a decode of 63
    # tokens for the first request (what the seven used to wait for)
    assert eight.max() < 8 * one
    assert eight.max() == pytest.approx(eight.min())
