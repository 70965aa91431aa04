"""MoE simulation speed: wall time and SimPy events/s for one DeepSeek-V3 training step.

    python benchmarks/moe_speed.py [--fidelity analytical|flow|both] [--repeat 1] [--ep-flows]

Cases (MoE issue): DeepSeek-V3 on 2048 H800s as its technical report describes (section 3:
EP64 across 8 nodes, PP16, no TP, ZeRO-1 over the 128-way data parallelism; batch 15360
sequences of 4096 tokens, section 4.2), and on 1024 H100s (EP64, PP16, batch 4096).
Targets: <= 2 s analytical, <= 10 s flow, on the 2-core development machine.
Both use the DeepEP-style dispatcher and all-to-all overlap (DualPipe-like hiding is
modelled as per-block overlap; docs/moe.md), full recompute so activations fit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.scenario import parse  # noqa: E402
from sim.simulate import simulate  # noqa: E402

LAYERS = [3] + [4] * 14 + [2]          # 61 layers: the dense ones first, the MTP on the last
WORKLOAD = {"kind": "training", "model": "deepseek-v3", "seq_len": 4096, "micro_batch": 1,
            "precision": "bf16", "recompute": "full",
            "moe": {"dispatcher": "deepep", "overlap": True}}
CASES = {
    "deepseek-v3-2048-h800": {
        "cluster": {"system": "dgx-h800", "nodes": 256},
        "workload": WORKLOAD | {"global_batch": 15360,
                                "parallel": {"tp": 1, "pp": 16, "ep": 64, "zero": 1,
                                             "pipeline_layers": LAYERS}}},
    "deepseek-v3-1024-h100": {
        "cluster": {"system": "dgx-h100", "nodes": 128},
        "workload": WORKLOAD | {"global_batch": 4096,
                                "parallel": {"tp": 1, "pp": 16, "ep": 64, "zero": 1,
                                             "pipeline_layers": LAYERS}}},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fidelity", default="both", choices=["analytical", "flow", "both"])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--ep-flows", action="store_true",
                    help="flow fidelity: play the all-to-alls as flows (sim.ep_flows)")
    args = ap.parse_args()
    fids = ["analytical", "flow"] if args.fidelity == "both" else [args.fidelity]
    for fid in fids:
        for name, sc in CASES.items():
            sc = {"name": name, **sc, "sim": {"fidelity": fid, "ep_flows": args.ep_flows}}
            walls, cpus, res = [], [], None
            for _ in range(args.repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                res = simulate(parse(sc, name), band=False)
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            wall = statistics.median(walls)
            # cpu_s: this process's CPU time, the wall time on an otherwise idle core
            print(json.dumps({"case": name, "fidelity": res.fidelity, "wall_s": round(wall, 2),
                              "cpu_s": round(statistics.median(cpus), 2),
                              "events": res.events, "events_per_s": round(res.events / wall),
                              "graph_nodes": res.extra["nodes"],
                              "iteration_time_s": round(res.iteration_time_s, 2),
                              "mfu": round(res.mfu, 3), "memory_peak_gib": round(res.memory_peak_gib, 1)}),
                  flush=True)


if __name__ == "__main__":
    main()
