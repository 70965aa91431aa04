"""Accuracy and trade-off figures for docs/reliability.md (prints markdown tables).

    PYTHONPATH=$PWD python benchmarks/reliability_sweep.py

1. Megatron-LM SC'21 1T checkpoint: size, save, load against the published figures.
2. Simulated goodput vs Daly's closed form (exponential failures), and the best interval
   found vs Young's sqrt(2 C M).
3. Checkpoint interval x sync/async sweep (Megatron 1T on Selene's Lustre, Llama 3 failure rates).
   -> docs/img/reliability_checkpoint_interval.png
4. Stragglers: goodput vs straggler fraction (Llama 3 scale), per-step independent vs
   persistent slow nodes with and without detection -> docs/img/reliability_stragglers.png
5. Llama 3 405B at 16K H100: goodput and interruptions beside the published figures,
   and the sensitivity to the (unpublished) restart time.
6. Speed of one run_summary.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import yaml

from benchmarks.reliability_plots import interval_plot, straggler_plot
from hw_models import storage
from sim.reliability import (
    RunModel,
    best_interval,
    daly_goodput,
    monte_carlo,
    run_model,
    run_summary,
    summarize,
    young_interval,
)
from sim.run_config import CheckpointConfig, DataConfig, RunConfig, StorageConfig, parse
from workloads.checkpoint import checkpoint_cost, checkpoint_size
from workloads.model import resolve

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
LLAMA = yaml.safe_load((ROOT / "scenarios" / "llama3_405b_run.yaml").read_text())
LLAMA_STEP = 6.721          # model FLOPs of a 16M-token step / (16384 x 400 TFLOP/s), Table 4


def table(rows: list[dict]) -> None:
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    print()


def megatron() -> None:
    size = checkpoint_size(resolve("megatron-1t")).total
    cost = checkpoint_cost(size, storage.tier("selene-lustre"), gpus=3072, gpus_per_node=8,
                           model_parallel=512)
    print("## Megatron-LM SC'21 1T checkpoint (selene-lustre, 64 writer nodes, 384 readers)\n")
    table([{"figure": "size TB", "published": 13.8, "clustersim": size / 1e12},
           {"figure": "save s (13.8 TB / 273 GB/s)", "published": 13.8e12 / 273e9, "clustersim": cost.write_s},
           {"figure": "load s (13.8 TB / 1 TB/s)", "published": 13.8, "clustersim": cost.load_s}])

def storage_fabric() -> None:
    """The fabric to storage as a third limit, and a checkpoint sharing links with an all-reduce."""
    import simpy

    from hw_models import catalog
    from hw_models.profile import load_builtin
    from sim.network.analytical import ClusterLayout
    from sim.network.flow import FlowNetwork
    from sim.storage_flows import attach_storage
    from workloads.graph import Collective, CommGroup
    print("## Megatron 1T save over the storage network (64 writer nodes, selene-lustre)\n")
    size = checkpoint_size(resolve("megatron-1t")).total
    rows = []
    for label, net in [("none (tier only)", None), ("dgx-a100-storage", "dgx-a100-storage"),
                       ("frontend, 100 GB/s uplinks", {"attach": "frontend", "nics_per_node": 2,
                                                       "nic_gbps": 200, "uplink_gb_s": 100})]:
        path = storage.network(net).resolve() if net else None
        cost = checkpoint_cost(size, storage.tier("selene-lustre"), gpus=3072, gpus_per_node=8,
                               model_parallel=512, path=path)
        rows.append({"storage network": label, "save_s": cost.write_s, "load_s": cost.load_s})
    table(rows)
    h100 = catalog.system("dgx-h100")
    print("## Flow model: 1 GB DP all-reduce (ranks 0, 8) with a 10 GB checkpoint write from rank 0\n")
    rows = []
    for label in ("converged", "dgx-h100-storage"):
        net = FlowNetwork(ClusterLayout(h100, 2, h100.nic_gbps), load_builtin("h100"), {})
        flows = attach_storage(net, storage.tier({"kind": "parallel_fs", "write_gb_s_aggregate": 1000}),
                               storage.network(label))
        group = CommGroup((0, 8), "dp")
        alone = net.collective_time("all_reduce", 1e9, group)
        env, out = simpy.Environment(), {}
        def ar(env=env, out=out, net=net, group=group):
            yield from net.collective(env, Collective("all_reduce", 1e9, group))
            out["t"] = env.now
        env.process(flows.transfer(env, [0], "write", 10e9))
        env.process(ar())
        env.run()
        rows.append({"storage network": label, "all_reduce alone ms": alone * 1e3,
                     "with checkpoint ms": out["t"] * 1e3, "slowdown": out["t"] / alone})
    table(rows)


def daly() -> None:
    print("## Simulated goodput vs Daly (exponential failures, 32 seeded runs each)\n")
    rows = []
    for step, mtbf_h, c, r in [(10, 3, 60, 600), (5, 1, 30, 300), (20, 12, 300, 1800), (2, 0.5, 5, 60)]:
        M = mtbf_h * 3600
        young = young_interval(c, M) / step
        m = RunModel(step_s=step, total_steps=int(400 * M / step), every_steps=round(young),
                     ckpt_block_s=c, ckpt_write_s=c, load_s=0, restart_s=r, rates={"gpu": 1 / M})
        s = summarize(monte_carlo(m, 11, 32))
        exp = daly_goodput(m.every_steps * step, c, r, M)
        best, _ = best_interval(m, 12, 8)
        rows.append({"step_s": step, "MTBF_h": mtbf_h, "C_s": c, "R_s": r, "sim": s["goodput"],
                     "se": s["goodput_se"], "daly": exp, "z": (s["goodput"] - exp) / s["goodput_se"],
                     "young_steps": young, "best_found": best, "best/young": best / young})
    table(rows)

def interval_sweep() -> None:
    print("## Checkpoint interval x sync/async (Megatron 1T, 3072 A100, Selene Lustre, "
          "Llama 3 failure rates, restart 600 s)\n")
    scen = {"cluster": {"system": "dgx-a100", "nodes": 384, "storage": {"checkpoint": "selene-lustre"}},
            "workload": {"model": "megatron-1t", "global_batch": 3072, "parallel": {"tp": 8, "pp": 64}},
            "run": {**LLAMA["run"], "tokens": None, "steps": 4000}}
    step = 3072 * 2048 * 6 * 1.008e12 * 1.0 / (3072 * 163e12)   # SC'21 Table 1: 163 TFLOP/s/GPU
    rows, models = [], {}
    for mode in ("sync", "async"):
        for every in (3, 5, 7, 10, 14, 20, 28, 40, 56, 80, 113, 160):
            scen["workload"]["checkpoint"] = {"every_steps": every, "mode": mode}
            m = models[mode] = _model(scen, step)
            s = summarize(monte_carlo(m, 3, 32))
            rows.append({"mode": mode, "every_steps": every, "minutes": every * step / 60,
                         "goodput": s["goodput"], "se": s["goodput_se"],
                         "ckpt_overhead_%": s["checkpoint_overhead_pct"],
                         "lost_h": s["lost_hours"], "block_s": m.ckpt_block_s, "write_s": m.ckpt_write_s})
    table(rows)
    sync = models["sync"]
    mtbf, rec = 1 / sync.rate, sync.restart_s + sync.load_s
    young = young_interval(sync.ckpt_block_s, mtbf)
    daly_pts = [(r["minutes"], daly_goodput(r["every_steps"] * step, sync.ckpt_block_s, rec, mtbf))
                for r in rows if r["mode"] == "sync"]
    print(f"Young optimum sqrt(2 C M) = {young / 60:.1f} min ({young / step:.1f} steps); "
          f"C = {sync.ckpt_block_s:.1f} s, MTBF = {mtbf / 3600:.2f} h\n")
    out = interval_plot(rows, young / 60, daly_pts, IMG / "reliability_checkpoint_interval.png",
                        "Megatron 1T on 3,072 A100 (Selene Lustre), Llama 3 failure rates")
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size // 1024} KB)\n")

def _model(scen: dict, step: float) -> RunModel:
    from sim.reliability import job_from_scenario
    run = parse(RunConfig, {k: v for k, v in scen["run"].items() if v is not None}, "run")
    return run_model(job_from_scenario(scen), step,
                     parse(StorageConfig, scen["cluster"]["storage"], "cluster.storage"),
                     parse(CheckpointConfig, scen["workload"].get("checkpoint"), "workload.checkpoint"),
                     parse(DataConfig, scen["workload"].get("data"), "workload.data"), run)[0]

STRAGGLER_MODELS = {
    "independent (per step)": {"mode": "independent"},
    "persistent, never drained": {"mode": "persistent", "duration_s": 6 * 3600},
    "persistent, drained after 30 min (live swap)": {
        "mode": "persistent", "duration_s": 6 * 3600, "detect_s": 1800, "drain": "live"},
    "persistent, drained after 30 min (restart)": {
        "mode": "persistent", "duration_s": 6 * 3600, "detect_s": 1800, "drain": "restart"},
}


def stragglers() -> None:
    print("## Stragglers (Llama 3 405B scale, 2048 nodes, slowdown 1.2, checkpoint every 35 steps, "
          "100k steps, 4 runs)\n")
    rows = []
    for label, cfg in STRAGGLER_MODELS.items():
        for f in (0.0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3):
            if f == 0 and rows:
                continue
            scen = copy.deepcopy(LLAMA)
            scen["run"].update(tokens=None, steps=100_000, samples=4,
                               stragglers={**cfg, "fraction": f, "slowdown": 1.2})
            scen["workload"]["checkpoint"] = {"every_steps": 35}
            s = summarize(monte_carlo(_model(scen, LLAMA_STEP), 0, 4))
            rows.append({"model": label, "fraction": f, "goodput": s["goodput"],
                         "se": s["goodput_se"], "straggler_overhead_%": s["slow_overhead_pct"],
                         "interruptions": s["interruptions"]})
    table(rows)
    out = straggler_plot(rows, IMG / "reliability_stragglers.png",
                         "Llama 3 405B scale (2,048 nodes), slowdown 1.2, episodes of 6 h")
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size // 1024} KB)\n")


def llama3() -> None:
    print("## Llama 3 405B, 16,384 H100, 15.6T tokens (step 6.72 s from model FLOPs at 400 TFLOP/s/GPU)\n")
    rows = []
    for restart in (300, 600, 1200, 1800):
        scen = copy.deepcopy(LLAMA)
        scen["run"]["restart_s"] = restart
        t0 = time.perf_counter()
        s = run_summary(scen, LLAMA_STEP)
        rows.append({"restart_s": restart, "run_days": s["run_days"], "goodput": s["goodput"],
                     "interruptions": s["interruptions"],
                     "per_54_days": s["interruptions"] * 54 / s["run_days"],
                     "lost_h": s["lost_hours"], "ckpt_%": s["checkpoint_overhead_pct"],
                     "best_every": s["best_every_steps"], "young_every": s["young_every_steps"],
                     "seconds": time.perf_counter() - t0})
    table(rows)
    print("published: 466 interruptions in 54 days (419 unexpected, 47 planned), "
          ">90% effective training time\n")
    print("Variants at restart 600 s (assumptions, not published):\n")
    rows = []
    for label, edit in LLAMA_VARIANTS.items():
        scen = copy.deepcopy(LLAMA)
        edit(scen)
        s = run_summary(scen, LLAMA_STEP)
        rows.append({"variant": label, "goodput": s["goodput"], "interruptions": s["interruptions"],
                     "per_54_days": s["interruptions"] * 54 / s["run_days"],
                     "slow_%": s["slow_overhead_pct"], "ckpt_block_s": s["checkpoint_block_s"]})
    table(rows)


LLAMA_VARIANTS = {
    "as published (no stragglers)": lambda sc: None,
    "+ DGX H100 storage NICs (frontend)": lambda sc: sc["cluster"]["storage"].update(
        network="dgx-h100-storage"),
    "+ slow nodes 1e-4, 6 h, never drained": lambda sc: sc["run"].update(stragglers={
        "mode": "persistent", "fraction": 1e-4, "slowdown": 1.2, "duration_s": 21600}),
    "+ slow nodes 1e-4, drained after 30 min (restart)": lambda sc: sc["run"].update(stragglers={
        "mode": "persistent", "fraction": 1e-4, "slowdown": 1.2, "duration_s": 21600,
        "detect_s": 1800}),
}

if __name__ == "__main__":
    megatron()
    storage_fabric()
    daly()
    interval_sweep()
    stragglers()
    llama3()
    print(f"(math check: sqrt(2*2.84 s*2.78 h)/6.72 s = {math.sqrt(2 * 2.842 * 2.781 * 3600) / 6.721:.1f} steps)")

