"""Simulator speed: wall time and SimPy events/s for one training iteration.

    python benchmarks/sim_speed.py [--fidelity analytical|flow] [--repeat 3]

Targets (core issue): GPT-3 175B on 1024 A100s (TP8 PP8 DP16, GBS 1536, vpp 3) <= 2 s,
Llama-3 405B on 16384 H100s <= 10 s, on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from sim.scenario import parse
from sim.simulate import simulate

CASES = {
    "gpt3-175b-1024-a100": {
        "cluster": {"system": "dgx-a100", "nodes": 128},
        "workload": {"model": "gpt3-175b", "global_batch": 1536, "micro_batch": 1,
                     "precision": "bf16", "recompute": "selective",
                     "parallel": {"tp": 8, "pp": 8, "dp": 16, "vpp": 3,
                                  "sequence_parallel": True, "zero": 1}}},
    # Llama 3 405B pre-training layout (Dubey et al. 2024, Table 4: TP8 CP1 PP16 DP128,
    # 16M-token batches of 8K sequences; first and last stages hold one layer fewer).
    # Full recompute: without it 15 in-flight 8K microbatches do not fit in 80 GB.
    "llama3-405b-16384-h100": {
        "cluster": {"system": "dgx-h100", "nodes": 2048},
        "workload": {"model": "llama3-405b", "global_batch": 2048, "micro_batch": 1,
                     "precision": "bf16", "recompute": "full",
                     "parallel": {"tp": 8, "pp": 16, "dp": 128, "sequence_parallel": True,
                                  "zero": 1, "pipeline_layers": [7] + [8] * 14 + [7]}}},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fidelity", default="analytical")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    out = {}
    for name, sc in CASES.items():
        sc = {"name": name, **sc, "sim": {"fidelity": args.fidelity}}
        walls, res = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = simulate(parse(sc, name), band=False)
            walls.append(time.perf_counter() - t0)
        wall = statistics.median(walls)
        out[name] = {"wall_s": round(wall, 3), "events": res.events,
                     "events_per_s": round(res.events / wall), "graph_nodes": res.extra["nodes"],
                     "iteration_time_s": round(res.iteration_time_s, 3), "mfu": round(res.mfu, 3),
                     "fidelity": res.fidelity}
        print(json.dumps({name: out[name]}))


if __name__ == "__main__":
    main()
