"""Serving-simulation speed: 10,000 requests on 8 replicas (Llama 3 70B, TP=4, 4 DGX
H100 nodes), every batching policy. Prints wall seconds and simulated throughput.

    PYTHONPATH=. python benchmarks/inference_speed.py
"""

from __future__ import annotations

import time

from sim import scenario
from sim.simulate import simulate

BASE = {
    "name": "bench-10k-8rep", "cluster": {"system": "dgx-h100", "nodes": 4},
    "workload": {"kind": "inference", "model": "llama3-70b", "precision": "fp16",
                 "parallel": {"tp": 4}, "replicas": 8,
                 "disaggregation": {"prefill_replicas": 3, "decode_replicas": 5},
                 "router": "least_outstanding",
                 "requests": {"count": 10000, "arrival": "poisson", "rate_per_s": 40.0,
                              "prompt_len": {"dist": "lognormal", "median": 1024, "sigma": 0.8,
                                             "low": 16, "high": 6000},
                              "output_len": {"dist": "uniform", "low": 32, "high": 512},
                              "seed": 0}},
}


def main() -> None:
    print(f"{'policy':14s} {'wall_s':>7s} {'iterations':>10s} {'tok/s (sim)':>12s} {'p99 TBT ms':>10s}")
    for policy in ("static", "orca", "vllm", "sarathi", "disaggregated"):
        sc = scenario.parse(BASE)
        sc.workload.scheduler.policy = policy
        t0 = time.perf_counter()
        res = simulate(sc)
        wall = time.perf_counter() - t0
        m = res.metrics
        print(f"{policy:14s} {wall:7.1f} {res.extra['iterations']:10d} "
              f"{m['throughput_tokens_per_s']:12,.0f} {m['tbt_ms']['p99']:10.1f}")


if __name__ == "__main__":
    main()
