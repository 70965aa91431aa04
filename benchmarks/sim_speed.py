"""Simulator speed as a user sees it: the whole ``clustersim simulate FILE`` command.

    python benchmarks/sim_speed.py [--repeat 3] [--only NAME ...] [--fidelity flow|analytical]

Per case and fidelity: median wall time of the whole CLI command (interpreter start,
imports, the play, the prediction band, the printout) over ``--repeat`` runs, its peak
RSS, and the engine's SimPy events with events/s of the median run. The packages are
byte-compiled first, as an installed package is: where PYTHONDONTWRITEBYTECODE is set
(this sandbox), every command would otherwise compile ~110 modules again (~0.1 s). Targets (issue 20,
2-core machine): GPT-3 175B on 1024 GPUs, flow, with band <= 1 s; Llama 3 405B on 16384
H100 flow <= 5 s and <= 1 GB; a 175B model on 12288 GPUs flow <= 5 s; DeepSeek-V3 (EP64)
on 2048 GPUs flow with its all-to-alls <= 10 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))           # this checkout's packages, for the in-process count

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
    # GPT-3 175B on 12,288 A100s: the 1024-GPU plan with 12x the data parallelism.
    "gpt3-175b-12288-a100": {
        "cluster": {"system": "dgx-a100", "nodes": 1536},
        "workload": {"model": "gpt3-175b", "global_batch": 1536, "micro_batch": 1,
                     "precision": "bf16", "recompute": "selective",
                     "parallel": {"tp": 8, "pp": 8, "dp": 192, "vpp": 3,
                                  "sequence_parallel": True, "zero": 1}}},
    # DeepSeek-V3 as its technical report trains it (section 3: EP64 across 8 nodes, PP16,
    # no TP, ZeRO-1 over DP128; batch 15360 x 4096, section 4.2); the same case as
    # benchmarks/moe_speed.py. The "+ep-flows" case plays the all-to-alls as flows that
    # share links with the other traffic (sim.ep_flows; flow fidelity only).
    "deepseek-v3-2048-h800": {
        "cluster": {"system": "dgx-h800", "nodes": 256},
        "workload": {"kind": "training", "model": "deepseek-v3", "seq_len": 4096,
                     "global_batch": 15360, "micro_batch": 1, "precision": "bf16",
                     "recompute": "full", "moe": {"dispatcher": "deepep", "overlap": True},
                     "parallel": {"tp": 1, "pp": 16, "ep": 64, "zero": 1,
                                  "pipeline_layers": [3] + [4] * 14 + [2]}}},
}
EP_FLOWS = {"deepseek-v3-2048-h800"}       # cases also run with sim.ep_flows under flow


def run_cli(path: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MB) of one ``simulate`` command in a fresh
    interpreter. CPU time is reported beside wall time: on a shared machine it is the
    figure that does not depend on the other load."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli.main", "simulate", str(path)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{path.name}: exit {proc.returncode}: {proc.stderr.read().decode()}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024   # maxrss: kB


def events(sc: dict, name: str) -> tuple[int, float]:
    """SimPy events of the play and the predicted iteration time (in-process, no band)."""
    from sim.scenario import parse
    from sim.simulate import simulate
    res = simulate(parse(sc, name), band=False)
    return res.events, res.iteration_time_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None, help="case names (default: all)")
    ap.add_argument("--fidelity", nargs="*", default=["analytical", "flow"])
    args = ap.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", "sim", "hw_models", "workloads",
                    "calibration"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    print(f"| scenario | fidelity | wall (median of {args.repeat}) | CPU | peak RSS | events | "
          "events/s | iteration |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in CASES.items():
            if args.only and name not in args.only:
                continue
            runs_of = [(fid, {"fidelity": fid}) for fid in args.fidelity]
            if name in EP_FLOWS and "flow" in args.fidelity:
                runs_of.append(("flow+ep-flows", {"fidelity": "flow", "ep_flows": True}))
            for fid, sim in runs_of:
                sc = {"name": name, **case, "sim": sim}
                path = Path(tmp) / f"{name}-{fid}.yaml"
                path.write_text(yaml.safe_dump(sc))
                runs = [run_cli(path) for _ in range(args.repeat)]
                wall = statistics.median(w for w, _, _ in runs)
                cpu = statistics.median(c for _, c, _ in runs)
                rss = max(r for _, _, r in runs)
                n, t_iter = events(sc, name)
                print(f"| {name} | {fid} | {wall:.2f} s | {cpu:.2f} s | {rss:.0f} MB | {n:,} | "
                      f"{n / wall:,.0f} | {t_iter:.3f} s |", flush=True)


if __name__ == "__main__":
    main()
