import pytest

from sim import scenario
from sim.serving import fast_forward, loop


def make(policy="vllm", **requests):
    req = {"count": 200, "arrival": "poisson", "rate_per_s": 10.0, "seed": 1,
           "prompt_len": {"dist": "lognormal", "median": 2048, "sigma": 0.6, "low": 64, "high": 6000},
           "output_len": 128} | requests
    return {"cluster": {"system": "dgx-h100", "nodes": 1},
            "workload": {"kind": "inference", "model": "llama3-8b", "parallel": {"tp": 1},
                         "replicas": 2, "scheduler": {"policy": policy, "chunk_size": 512},
                         "disaggregation": {"prefill_replicas": 1, "decode_replicas": 1},
                         "requests": req, "slo": {"ttft_ms": 400, "tpot_ms": 10}}}


@pytest.fixture
def scen():
    def build(policy="vllm", overrides=(), **requests):
        return scenario.parse(scenario.apply_overrides(make(policy, **requests), list(overrides)))
    return build


@pytest.fixture
def decode_runs(monkeypatch):
    """Records, for every decode run the serving loop tries, whether the fast-forward
    shortcut played it (True) or fell back to step-by-step iterations (False)."""
    runs = []

    def counted(*a):
        end = fast_forward.decode_run(*a)
        runs.append(end is not None)
        return end
    monkeypatch.setattr(loop, "decode_run", counted)
    return runs
