"""Pipeline schedules on real costs: iteration time, bubble and peak memory of every
schedule for one plan (Llama 3 8B, seq 8192, TP 2, PP 4, 32 microbatches, 8 H100), then
a few with ``pipeline_layers`` giving the ranks that hold the output layer fewer layers.

    PYTHONPATH=. python benchmarks/pipeline_schedules.py
"""

from __future__ import annotations

from sim.scenario import parse
from sim.simulate import simulate

SCHEDULES = ("gpipe", "1f1b", "interleaved", "zb-h1", "zb-v", "dualpipe", "dualpipev")
# Llama 3's output layer weighs about two transformer layers: the last rank (rank 0 on a V)
# gets fewer layers (per rank; per virtual stage in path order for zb-v).
BALANCED = {"1f1b": [9, 8, 8, 7], "zb-h1": [9, 8, 8, 7], "zb-v": [3, 5, 5, 4, 4, 4, 4, 3]}


def scenario(schedule: str, layers: list[int] | None = None) -> dict:
    par = {"tp": 2, "pp": 4, "zero": 1, "schedule": schedule, "vpp": 2 if schedule == "interleaved" else 1}
    if layers:
        par["pipeline_layers"] = layers
    return {"name": f"llama3-8b-{schedule}", "cluster": {"system": "dgx-h100", "nodes": 1},
            "workload": {"model": "llama3-8b", "seq_len": 8192, "global_batch": 32,
                         "micro_batch": 1, "recompute": "selective", "parallel": par},
            "sim": {"check_memory": False}}


def main() -> None:
    print(f"{'schedule':<12} {'pipeline_layers':<26} {'iteration s':>12} {'bubble s':>9} "
          f"{'compute s':>10} {'memory GiB':>11}")
    runs = [(s, None) for s in SCHEDULES] + list(BALANCED.items())
    for sched, layers in runs:
        res = simulate(parse(scenario(sched, layers)), band=False)
        b = res.breakdown
        print(f"{sched:<12} {str(layers or 'even'):<26} {res.iteration_time_s:>12.3f} "
              f"{b.get('bubble', 0):>9.3f} {b.get('compute', 0):>10.3f} {res.memory_peak_gib:>11.1f}")


if __name__ == "__main__":
    main()
