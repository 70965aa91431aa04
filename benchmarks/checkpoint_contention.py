"""Async checkpoint writes on a converged vs a dedicated storage network (docs/reliability.md).

GPT-3 175B on 128 DGX H100 (Megatron plan tp 8, pp 8, vpp 3, zero 1: all 1,024 GPUs write),
flow fidelity, one iteration with and without the background write, then the whole run
(300B tokens, Llama 3 failure rates, restart 600 s, checkpoint every 50 steps).

    PYTHONPATH=$PWD python benchmarks/checkpoint_contention.py [--quick]
"""

from __future__ import annotations

import sys
import time

from sim import scenario
from sim.reliability import run_summary
from sim.simulate import simulate

BASE = {
    "name": "gpt3-175b-128-dgx-h100-async",
    "cluster": {"system": "dgx-h100", "nodes": 128,
                "storage": {"checkpoint": "tectonic-llama3", "network": "converged"}},
    "workload": {"model": "gpt3-175b", "global_batch": 1536, "micro_batch": 1,
                 "parallel": {"tp": 8, "pp": 8, "vpp": 3, "sequence_parallel": True,
                              "schedule": "interleaved", "zero": 1},
                 "recompute": "selective",
                 "checkpoint": {"every_steps": 50, "mode": "async"}},
    "sim": {"fidelity": "flow"},
    "run": {"tokens": 300e9, "restart_s": 600, "samples": 8, "seed": 0,
            "failures": {"gpu": 0.22154, "hbm": 0.08138, "switch": 0.03956, "host": 0.05199,
                         "nic": 0.00791, "software": 0.07121, "planned": 0.05312}},
}

# (label, checkpoint tier, zero, global batch) - the tier sets the write's pace; zero 0 makes
# one replica (64 GPUs on 8 nodes) write the whole checkpoint through fewer NICs; a smaller
# batch makes the step shorter than the write.
VARIANTS = [
    ("tectonic 2 TB/s, zero 1", "tectonic-llama3", 1, 1536),
    ("selene-lustre 273 GB/s, zero 1", "selene-lustre", 1, 1536),
    ("tectonic 2 TB/s, zero 0", "tectonic-llama3", 0, 1536),
    ("tectonic, zero 0, batch 128", "tectonic-llama3", 0, 128),
]
NETWORKS = ["converged", "dgx-h100-storage"]


def one(tier: str, net: str, zero: int, batch: int = 1536) -> dict:
    sc = scenario.parse(BASE)
    sc = scenario.parse({**sc.model_dump(exclude_none=True), "cluster": {
        **sc.cluster.model_dump(exclude_none=True),
        "storage": {"checkpoint": tier, "network": net}}})
    data = sc.model_dump(exclude_none=True)
    data["workload"]["parallel"]["zero"] = zero
    data["workload"]["global_batch"] = batch
    sc = scenario.parse(data)
    t0 = time.perf_counter()
    res = simulate(sc, band=False)
    cc = res.extra["checkpoint_contention"]
    run = run_summary(sc, res.iteration_time_s, cc)
    plain = run_summary(sc, res.iteration_time_s)        # the write taken as free (before)
    return {"net": net, "step_s": cc["iteration_s_without"], "with_s": cc["iteration_s_with"],
            "write_s": cc["write_s"], "overlap": cc["overlapped_steps"],
            "goodput": run["goodput"], "ckpt_pct": run["checkpoint_overhead_pct"],
            "goodput_free": plain["goodput"], "ckpt_pct_free": plain["checkpoint_overhead_pct"],
            "sim_s": time.perf_counter() - t0}


def main() -> None:
    variants = VARIANTS[:1] if "--quick" in sys.argv else VARIANTS
    print("| variant | storage network | step s | with write s | slowdown % | write s | "
          "overlapped steps | goodput | ckpt_overhead_% | goodput (write free) | "
          "ckpt_% (write free) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, tier, zero, batch in variants:
        for net in NETWORKS:
            r = one(tier, net, zero, batch)
            print(f"| {label} | {net} | {r['step_s']:.4f} | {r['with_s']:.4f} | "
                  f"{100 * (r['with_s'] / r['step_s'] - 1):.2f} | {r['write_s']:.2f} | "
                  f"{r['overlap']:.2f} | {r['goodput']:.4f} | {r['ckpt_pct']:.3f} | "
                  f"{r['goodput_free']:.4f} | {r['ckpt_pct_free']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
