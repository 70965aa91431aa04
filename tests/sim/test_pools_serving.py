"""Serving on pools: replicas at their pool's speed, Splitwise-style prefill on one pool and
decode on another, the KV hand-over across pools, placement errors."""

import copy

import pytest

from hw_models import profile
from hw_models.errors import ClusterSimError
from sim import scenario
from sim.pools import make_pools
from sim.serving_pools import kv_transfer
from sim.simulate import simulate

BASE = {"cluster": {"pools": [{"name": "h100", "system": "dgx-h100", "nodes": 1},
                              {"name": "a100", "system": "dgx-a100", "nodes": 1}]},
        "workload": {"kind": "inference", "model": "llama3-8b", "precision": "fp16",
                     "parallel": {"tp": 1}, "replicas": 2,
                     "requests": {"count": 120, "rate_per_s": 8, "seed": 1,
                                  "prompt_len": {"dist": "lognormal", "median": 2048,
                                                 "sigma": 0.6, "low": 64, "high": 6000},
                                  "output_len": 128},
                     "slo": {"ttft_ms": 400, "tpot_ms": 20}}}


def serve(policy, pools):
    data = copy.deepcopy(BASE)
    data["workload"]["scheduler"] = {"policy": policy}
    data["workload"]["replica_pools"] = pools
    return simulate(scenario.parse(data)).summary()


def test_replicas_run_at_their_pools_speed():
    h, a = serve("vllm", ["h100", "h100"]), serve("vllm", ["a100", "a100"])
    assert h["tpot_ms"]["p50"] < a["tpot_ms"]["p50"] and h["ttft_ms"]["p50"] < a["ttft_ms"]["p50"]
    mixed = serve("vllm", ["h100", "a100"])
    assert h["tpot_ms"]["mean"] < mixed["tpot_ms"]["mean"] < a["tpot_ms"]["mean"]


def test_splitwise_prefill_on_one_pool_decode_on_another():
    split = serve("disaggregated", ["h100", "a100"])       # prefill H100, decode A100
    all_h = serve("disaggregated", ["h100", "h100"])
    # the first token comes from the prefill replica alone: same pool, same TTFTs
    assert split["ttft_ms"] == all_h["ttft_ms"]
    assert split["tpot_ms"]["p50"] > all_h["tpot_ms"]["p50"]    # A100 decodes slower
    names = {p["name"]: p["replicas"] for p in split["pools"]}
    assert names == {"h100": [0], "a100": [1]}


def test_kv_handover_crosses_the_common_network():
    sc = scenario.parse(copy.deepcopy(BASE) | {})
    pools = make_pools(sc)
    t = kv_transfer(pools, sc.workload)(0, 1, 1e9)
    # the slower NIC share: DGX A100 8 x 200 Gb/s over 8 GPUs = 25 GB/s, after one network
    # step's latency on the h100 curve (35.501 + 6.6 + 2.7 - 35.2 = 9.601 us)
    curve = profile.load("h100").collectives["network"]
    assert t == pytest.approx(9.601e-6 + 1e9 / (25e9 * curve.eff(1e9)))


def test_energy_per_pool_within_bounds():
    s = serve("vllm", ["h100", "a100"])
    t = s["energy"]["seconds"]
    lo, hi = 8 * (70 + 40) * t, 8 * (700 + 400) * t
    assert lo < s["energy"]["gpu_j"] < hi
    assert s["cost_usd"] == pytest.approx((3.0 + 1.8) * 8 * t / 3600)


@pytest.mark.parametrize("pools,words", [(None, "replica_pools"), (["h100"], "2 replicas"),
                                         (["h100", "x"], "unknown pool")])
def test_bad_placement(pools, words):
    with pytest.raises(ClusterSimError, match=words):
        serve("vllm", pools)


@pytest.mark.parametrize("name,overrides", [
    ("hetero_h100_b200.yaml", ["cluster.pue=1.0"]),
    ("splitwise_h100_a100.yaml", ["workload.requests.count=60"])])
def test_examples_run(name, overrides):
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "examples" / name
    r = simulate(scenario.load(path, overrides))
    assert r.extra["energy_j"] > 0 and r.extra["cost_usd"] > 0
    assert len(r.extra["pools"]) == 2
