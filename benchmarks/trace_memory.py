"""Peak memory and time to import and replay a large (~1 GB) Kineto trace.

The trace is synthetic but made of real events: the ProfilerSteps of a real A100 trace
(tests/data/traces/a100_2rank_rank0_nccl.json.gz) repeated back to back with shifted
timestamps and fresh correlation ids until the file reaches the requested size. It is
written to /tmp (never committed) and streamed back through the importer.

    PYTHONPATH=$PWD python benchmarks/trace_memory.py [--gb 1.0] [--keep]
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import time
from pathlib import Path

SEED_TRACE = Path(__file__).parent.parent / "tests/data/traces/a100_2rank_rank0_nccl.json.gz"


def generate(path: Path, target_bytes: float) -> int:
    """Write the synthetic trace; returns the number of events written."""
    src = json.loads(gzip.open(SEED_TRACE).read())
    events = [e for e in src["traceEvents"] if e.get("ph") != "M"]
    t0 = min(e["ts"] for e in events if "ts" in e)
    span = max(e["ts"] + e.get("dur", 0) for e in events if "ts" in e) - t0
    max_corr = max(e.get("args", {}).get("correlation", 0) for e in events) + 1
    header = {k: v for k, v in src.items() if k != "traceEvents"}
    n = rep = 0
    with open(path, "w") as f:
        f.write(json.dumps(header)[:-1] + ', "traceEvents": [\n')
        while f.tell() < target_bytes:
            for e in events:
                e2 = dict(e)
                if "ts" in e2:
                    e2["ts"] = e["ts"] + rep * span
                if e2.get("name", "").startswith("ProfilerStep#"):
                    e2["name"] = f"ProfilerStep#{rep * 10 + int(e['name'].split('#')[1])}"
                args = e.get("args")
                if isinstance(args, dict) and "correlation" in args:
                    e2["args"] = {**args, "correlation": args["correlation"] + rep * max_corr}
                if e2.get("ph") in ("s", "f") and isinstance(e2.get("id"), int):
                    e2["id"] = e2["id"] + rep * max_corr
                f.write((",\n" if n else "") + json.dumps(e2))
                n += 1
            rep += 1
        f.write("\n]}\n")
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    path = Path("/tmp/clustersim_trace_memory.json")
    t = time.perf_counter()
    n = generate(path, args.gb * 1e9)
    gen_s = time.perf_counter() - t
    rss_gen = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    from sim.replay import replay
    from workloads.traces import kineto
    t = time.perf_counter()
    trace = kineto.load(path)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    r = replay(trace)
    replay_s = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB -> GB (Linux)
    print(f"file: {path.stat().st_size / 1e9:.2f} GB, {n:,} events, generated in {gen_s:.0f} s "
          f"(peak RSS while generating {rss_gen:.2f} GB)")
    print(f"graph: {len(trace.graph):,} nodes, {len(trace.steps)} steps")
    print(f"import: {load_s:.1f} s; replay (engine, measured durations): {replay_s:.1f} s")
    print(f"replayed iteration {r.replayed.iteration_s * 1e3:.2f} ms vs measured "
          f"{r.measured_iteration_s * 1e3:.2f} ms ({r.replay_error * 100:+.2f}%)")
    print(f"peak RSS: {peak:.2f} GB (target < 4 GB)")
    if not args.keep:
        path.unlink()


if __name__ == "__main__":
    main()
