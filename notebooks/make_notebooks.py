"""Writes and executes the study notebooks (``python notebooks/make_notebooks.py``).

The notebooks are committed with their outputs; tests/app/test_notebooks.py re-executes
them with CLUSTERSIM_NB_QUICK=1 (fewer points) to check they still run clean.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent

SETUP = """import os, sys
from pathlib import Path
sys.path.insert(0, str(Path.cwd().parent))   # the repository this notebook lives in
import pandas as pd
import plotly.express as px
import plotly.io as pio
from hw_models import catalog
from sim import scenario
from sim.simulate import simulate
pio.renderers.default = "plotly_mimetype"
QUICK = os.environ.get("CLUSTERSIM_NB_QUICK") == "1"   # CI: fewer points, same code
pd.set_option("display.precision", 3)"""

SCALING = [
    ("md", """# Scaling a 175B model from 1k to 16k GPUs: rail-optimized vs oversubscribed fabrics

GPT-3 175B (96 layers, hidden 12288) on DGX H100 nodes with the Megatron plan of the
default scenario: tp=8 inside a node, pp=8 with 3 virtual stages (interleaved 1F1B),
sequence parallelism, ZeRO-1, selective recompute. The global batch is held at 4096
sequences of 2048 tokens (8.4M tokens) while the GPU count grows from 1,024 to 16,384:
strong scaling, the regime a designer faces when a bigger cluster should finish the same
run sooner. Fabrics: rail-optimized non-blocking (oversubscription 1) against 2:1 and 4:1
oversubscribed spines; the analytical network divides the cross-node bandwidth by the
oversubscription (`cluster.network.oversubscription`)."""),
    ("code", SETUP),
    ("code", """nodes = [128, 2048] if QUICK else [128, 256, 512, 1024, 2048]
fabrics = {"rail-optimized 1:1": 1.0, "oversubscribed 2:1": 2.0, "oversubscribed 4:1": 4.0}
rows = []
for fabric, over in fabrics.items():
    for n in nodes:
        r = simulate(scenario.default([f"cluster.nodes={n}", "workload.global_batch=4096",
                                       f"cluster.network.oversubscription={over}"]))
        rows.append({"fabric": fabric, "gpus": r.world_size, "iteration_s": r.iteration_time_s,
                     "mfu": r.mfu, "tokens_per_s": r.tokens_per_s,
                     **{f"{k}_share": v / r.iteration_time_s for k, v in r.breakdown.items()}})
df = pd.DataFrame(rows).fillna(0.0)
df"""),
    ("code", """px.line(df, x="gpus", y="mfu", color="fabric", markers=True, log_x=True,
        title="MFU vs GPUs (GPT-3 175B, global batch 4096)").show()"""),
    ("code", """parts = [c for c in df.columns if c.endswith("_share")]
long = df.melt(id_vars=["fabric", "gpus"], value_vars=parts, var_name="part", value_name="share")
px.bar(long, x="gpus", y="share", color="part", facet_col="fabric", log_x=True,
       title="Where the iteration goes (critical rank)").show()"""),
    ("md", """## What the numbers say"""),
    ("code", """def at(fabric, gpus, col):
    return df[(df.fabric == fabric) & (df.gpus == gpus)][col].iloc[0]
lo, hi = df.gpus.min(), df.gpus.max()
for fabric in fabrics:
    print(f"{fabric:20s} MFU {at(fabric, lo, 'mfu'):.1%} at {lo} GPUs -> {at(fabric, hi, 'mfu'):.1%} at {hi}; "
          f"bubble {at(fabric, lo, 'bubble_share'):.0%} -> {at(fabric, hi, 'bubble_share'):.0%}, "
          f"DP comm {at(fabric, lo, 'dp_share'):.0%} -> {at(fabric, hi, 'dp_share'):.0%}")
speedup = at("rail-optimized 1:1", hi, "tokens_per_s") / at("rail-optimized 1:1", lo, "tokens_per_s")
print(f"rail-optimized: {hi // lo}x the GPUs gives {speedup:.1f}x the throughput")"""),
    ("md", """**Conclusions** (read off the table and the printed lines above; full run):

* On the non-blocking rail-optimized fabric MFU falls from 48.8% at 1,024 GPUs to 34.9% at
  16,384 (16x the GPUs for 11.4x the throughput). Two things take it: the exposed
  data-parallel gradient traffic (1.6% -> 18.8% of the iteration) and the pipeline bubble
  (2.9% -> 12.3%). Both follow from the fixed batch: each pipeline gets 256 microbatches at
  1k GPUs but 16 at 16k, so there is less compute per iteration to hide the once-per-iteration
  reduce-scatter/all-gather and to amortise the pipeline fill and drain.
* Oversubscription multiplies the DP part, which crosses the spine: at 16k GPUs a 2:1 spine
  leaves MFU at 25.9% (DP 38%) and 4:1 at 17.1% (DP 58%), against 34.9% non-blocking. At 1k
  GPUs the same 4:1 spine costs only 3.8 MFU points (48.8% -> 45.0%): oversubscription is a
  cheap saving for a small cluster and a bad one for a large strong-scaled run.
* The tensor-parallel time is the same in every row (tp=8 traffic never leaves the NVLink
  domain); its share only shrinks as other parts grow. That is the point of rail-optimized
  designs: keep tp inside the node and send only DP/PP traffic across the fabric.
* To keep MFU at 16k GPUs, grow the global batch (more microbatches per pipeline) so the
  DP traffic overlaps with more compute, and keep the spine non-blocking"""),
]

SYSTEMS = [
    ("md", """# A100 vs H100 vs B200 vs GB200 NVL72: time, GPUs and cost to train one model

Llama-2 70B-class training is the common yardstick; here it is GPT-3 175B (the model the
core is validated on) trained on N = 300B tokens, the GPT-3 paper's budget. Every system
runs the same Megatron plan (tp=8, pp=8, vpp=3 interleaved, sequence parallel, ZeRO-1,
selective recompute, bf16, global batch 1536 x 2048 tokens) on about 1,024 GPUs, so the
differences come from the hardware: peak FLOP/s, HBM, scale-up bandwidth (NVL72's 72-GPU
domain) and NICs, all from the catalog with their sources. Cost uses each system's
`cost_per_gpu_hour_usd` from the catalog (a list price: the ranking, not the dollar figure,
is the robust part)."""),
    ("code", SETUP),
    ("code", """TOKENS = 300e9
systems = {"dgx-a100": 128, "dgx-h100": 128, "dgx-b200": 128, "gb200-nvl72": 256}
if QUICK:
    systems = {"dgx-a100": 128, "gb200-nvl72": 256}
rows = []
for name, nodes in systems.items():
    spec = catalog.system(name)
    r = simulate(scenario.default([f"cluster.system={name}", f"cluster.nodes={nodes}"]))
    days = TOKENS / r.tokens_per_s / 86400
    gpu_hours = days * 24 * r.world_size
    rows.append({"system": name, "gpus": r.world_size, "iteration_s": r.iteration_time_s,
                 "mfu": r.mfu, "tokens_per_s": r.tokens_per_s, "days": days,
                 "gpu_hours": gpu_hours, "usd_per_gpu_hour": spec.cost_per_gpu_hour_usd,
                 "cost_musd": gpu_hours * spec.cost_per_gpu_hour_usd / 1e6,
                 "gpus_for_30_days": r.world_size * days / 30})
df = pd.DataFrame(rows)
df"""),
    ("code", """px.bar(df, x="system", y="days", text_auto=".1f",
       title="Days to train GPT-3 175B on 300B tokens with ~1,024 GPUs").show()
px.scatter(df, x="days", y="cost_musd", text="system", size="gpus_for_30_days",
           title="Time vs cost (bubble size: GPUs for a 30-day run)").show()"""),
    ("md", """`gpus_for_30_days` scales the GPU count linearly with the simulated time: an
optimistic bound, since the scaling notebook shows MFU falling as a fixed batch is spread
over more GPUs."""),
    ("code", """base = df.set_index("system")
ref = base.index[0]
for s, row in base.iterrows():
    print(f"{s:12s} {row.days:6.1f} days  MFU {row.mfu:.1%}  ${row.cost_musd:5.2f}M  "
          f"{base.loc[ref, 'days'] / row.days:4.1f}x faster than {ref}, "
          f"{row.cost_musd / base.loc[ref, 'cost_musd']:4.2f}x its cost")"""),
    ("md", """**Conclusions** (from the printed lines above; full run):

* At ~1,024 GPUs the run takes 20.1 days on A100, 7.9 on H100, 4.0 on B200 and 3.4 on
  GB200 NVL72: 2.6x, 5.0x and 5.9x faster than A100. That is less than the ratio of dense
  bf16 peaks (3.2x, 7.2x, 7.9x): MFU falls from 58% (A100) to 47% (H100) and 41-44%
  (Blackwell) because the same plan's tensor-parallel and data-parallel communication does
  not shrink as fast as its compute.
* GB200 NVL72 is 17% faster than DGX B200 for a 9% higher peak: the rest is its 72-GPU NVLink
  domain, where each data-parallel ring has 9 ranks per domain instead of 1 per 8-GPU node,
  so more of the gradient traffic stays on NVLink (MFU 43.8% vs 40.8%).
* Per-GPU-hour list prices rise more slowly than throughput: the run costs $0.89M on A100,
  $0.58M on H100 and $0.54M on either Blackwell system, so the newest systems are both the
  fastest and (by a small margin over H100) the cheapest per run at these prices.
* For a fixed 30-day deadline the linear estimate needs ~690 A100s, ~270 H100s or
  ~120-140 Blackwell GPUs"""),
]

FLEET = [
    ("md", """# One training run and one serving load on six fleets: time, energy, cost

The same two jobs on H100, H200, B200, GB200 NVL72, MI300X and a mixed H100 + B200 fleet:

* **training**: Llama 3 70B on 300B tokens, 1,024 GPUs per fleet, one Megatron plan
  (tp=8, pp=4 with 5 virtual stages, sequence parallel, ZeRO-1, selective recompute, bf16,
  global batch 512 x 8,192 tokens). The mixed fleet is 512 H100 + 512 B200 in one pipeline:
  two stages on each pool, layers split by stage speed (`docs/hardware.md`);
* **serving**: Llama 3 70B (fp16, one replica per node: tp=8, tp=4 on a GB200 tray; vLLM-style batching) at 1M requests a day
  (11.6 requests/s, Poisson), prompts lognormal around 1,024 tokens, 32-512 output tokens;
  each fleet gets the fewest nodes that keep 90% of requests inside the SLO (first token
  1 s, 50 ms per output token). The mixed fleet keeps one H100 node and adds B200 nodes;
  one router sends each request to the replica with the least outstanding work
  (`workload.replica_pools`, `docs/hardware.md`).

Energy uses the power model of `docs/energy.md` at a facility PUE of 1.2; its TDPs are the
vendors', its activity weights are stated assumptions. The comparison uses the GPU boards'
energy x PUE: the host share is only known for the DGX systems (a published system maximum),
not for GB200 NVL72 or MI300X platforms (`mwh` includes it where known). Cost uses each system's dated default
GPU-hour price (`hw_models/data/prices.yaml`, rental). Only H100 and A100 have fitted time
models; every other part is a roofline at Hopper's efficiencies (each result's
`calibration` says so), so rank the fleets, do not quote the absolute numbers."""),
    ("code", SETUP),
    ("code", """TOKENS, PUE = 300e9, 1.2
PLAN = {"tp": 8, "pp": 4, "vpp": 5, "sequence_parallel": True, "schedule": "interleaved",
        "zero": 1}
WORK = {"model": "llama3-70b", "global_batch": 512, "micro_batch": 1, "precision": "bf16",
        "recompute": "selective"}
fleets = {"H100": {"system": "dgx-h100", "nodes": 128}, "H200": {"system": "dgx-h200", "nodes": 128},
          "B200": {"system": "dgx-b200", "nodes": 128}, "GB200 NVL72": {"system": "gb200-nvl72", "nodes": 256},
          "MI300X": {"system": "mi300x-8", "nodes": 128},
          "H100 + B200": {"pools": [{"name": "h100", "system": "dgx-h100", "nodes": 64},
                                    {"name": "b200", "system": "dgx-b200", "nodes": 64}]}}
if QUICK:
    fleets = {k: fleets[k] for k in ("H100", "H100 + B200")}
rows = []
for name, cluster in fleets.items():
    plan = PLAN | ({"stage_pools": ["h100", "h100", "b200", "b200"]} if "pools" in cluster else {})
    r = simulate(scenario.parse({"name": name, "cluster": cluster | {"pue": PUE},
                                 "workload": WORK | {"parallel": plan}}), band=False)
    steps = TOKENS / (WORK["global_batch"] * 8192)
    x = r.extra
    cal = sorted({p["calibration"]["status"] for p in x["pools"]} if "pools" in x
                 else {x["calibration"]["status"]})
    rows.append({"fleet": name, "gpus": r.world_size, "mfu": r.mfu,
                 "days": steps * r.iteration_time_s / 86400,
                 "mwh": steps * x["energy_j"] / 3.6e9,
                 "gpu_board_mwh": steps * x["energy"]["gpu_j"] * PUE / 3.6e9,
                 "avg_w_per_gpu": x["avg_power_w_per_gpu"],
                 "cost_musd": None if x["cost_usd"] is None else steps * x["cost_usd"] / 1e6,
                 "host_power_counted": not x["energy"]["not_counted"][:-1],
                 "calibration": ", ".join(cal),
                 "layers": x.get("pipeline_layers")})
train = pd.DataFrame(rows)
train"""),
    ("code", """px.scatter(train, x="days", y="gpu_board_mwh", text="fleet", size="gpus",
           title="Llama 3 70B, 300B tokens on 1,024 GPUs: days vs GPU-board energy (MWh, PUE 1.2)").show()"""),
    ("code", """RATE = 1e6 / 86400          # 1M requests a day
COUNT = 150 if QUICK else 600
REQUESTS = {"count": COUNT, "rate_per_s": RATE, "seed": 0,
            "prompt_len": {"dist": "lognormal", "median": 1024, "sigma": 0.8, "low": 16, "high": 6000},
            "output_len": {"dist": "uniform", "low": 32, "high": 512}}

def serve(pools):
    \"\"\"pools: [(system, nodes)]; one replica per node (tp = the node's GPUs).\"\"\"
    tp = min(catalog.system(s).gpus_per_node for s, _ in pools)
    work = {"kind": "inference", "model": "llama3-70b", "precision": "fp16", "parallel": {"tp": tp},
            "replicas": sum(n * catalog.system(s).gpus_per_node // tp for s, n in pools),
            "router": "least_outstanding", "requests": REQUESTS,
            "slo": {"ttft_ms": 1000, "tpot_ms": 50}}
    if len(pools) == 1:
        cluster = {"system": pools[0][0], "nodes": pools[0][1]}
    else:
        cluster = {"pools": [{"name": s, "system": s, "nodes": n} for s, n in pools]}
        work["replica_pools"] = [s for s, n in pools for _ in range(n * catalog.system(s).gpus_per_node // tp)]
    return simulate(scenario.parse({"cluster": cluster | {"pue": PUE}, "workload": work})).summary()

def smallest(make):
    \"\"\"Grow the fleet one node at a time until 90% of requests meet the SLO.\"\"\"
    for k in range(1, 9):
        s = serve(make(k))
        if s["slo_attainment"] >= 0.9:
            break
    day = 86400 / s["energy"]["seconds"]
    tokens = s["energy_j"] / s["joules_per_token"]
    return {"nodes": sum(n for _, n in make(k)), "gpus": s["world_size"], "slo": s["slo_attainment"],
            "mwh_per_day": s["energy"]["gpu_j"] * PUE * day / 3.6e9,        # boards x PUE
            "usd_per_day": s["cost_usd"] * day,
            "j_per_output_token": s["energy"]["gpu_j"] * PUE / tokens}

serving = {"H100": lambda k: [("dgx-h100", k)], "H200": lambda k: [("dgx-h200", k)],
           "B200": lambda k: [("dgx-b200", k)], "GB200 NVL72": lambda k: [("gb200-nvl72", k)],
           "MI300X": lambda k: [("mi300x-8", k)],
           "H100 + B200": lambda k: [("dgx-h100", 1), ("dgx-b200", k)]}   # one H100 node kept
if QUICK:
    serving = {k: serving[k] for k in ("H100", "H100 + B200")}
serve_df = pd.DataFrame([{"fleet": k} | smallest(v) for k, v in serving.items()])
serve_df"""),
    ("code", """both = train.merge(serve_df, on="fleet", suffixes=("_train", "_serve"))
for r in both.itertuples():
    cost = "n/a" if r.cost_musd is None or r.cost_musd != r.cost_musd else f"${r.cost_musd:.2f}M"
    print(f"{r.fleet:12s} train {r.days:5.1f} days {r.gpu_board_mwh:6.0f} MWh (boards) {cost:>8s} | "
          f"serve {r.nodes} node(s) ({r.gpus_serve} GPUs) {r.mwh_per_day:5.2f} MWh/day "
          f"${r.usd_per_day:,.0f}/day {r.j_per_output_token:.2f} J/token [{r.calibration}]")"""),
    ("md", """**Conclusions** (from the printed lines above; full run):

* **Training** (300B tokens, 1,024 GPUs): 3.6 days on H100 and on H200 (same compute; the
  extra HBM buys nothing for this plan), 3.0 on MI300X, 1.8 on B200 and 1.5 on GB200 NVL72.
  The mixed H100 + B200 pipeline takes 2.6 days: the speed split gives each B200 stage 25
  layers and each H100 stage 15, and the pipeline runs at the pace of the slower half's
  share (MFU 39% against 41-46% for the single-type fleets).
* **Energy** (GPU boards x PUE 1.2): 59 MWh on H100/H200, 50 on MI300X, 47 on the mixed fleet,
  43 on GB200 NVL72 and 40 on B200. Blackwell boards draw more (750-930 W mean against 550 W)
  but for half the time. With the DGX hosts and the switches the H100 run is 98 MWh (B200
  64): the rest of the node and the fabric add about two thirds to the GPUs' energy, so the
  board-only numbers understate every fleet.
* **Cost** at the default rental prices: $0.24-0.27M for every fleet except H200 ($0.33M):
  the list prices track throughput, so the faster fleets are mostly faster, not cheaper.
* **Serving** 1M requests a day: one node (B200, MI300X) or one GB200 tray (tp=4) meets the
  SLO for 90% of requests, H100 and H200 need two nodes. $624/day (GB200 tray) to $1,459/day
  (2 H200 nodes); 1.7 J per output token on GB200 to 3.7 on H100. Keeping one H100 node and
  adding one B200 node serves the load ($1,632/day, 4.2 J/token) but costs more than the B200
  node alone: the load is small enough for one node, and two half-loaded nodes batch less.
  The serving window is 600 requests (about a minute of traffic), scaled to a day as
  steady state.
* Only H100 (and A100) time models are fitted; the other parts are rooflines at Hopper's
  efficiencies, and the power weights are assumptions (`docs/energy.md`): the ranking is the
  robust part, the absolute days, MWh and dollars are estimates"""),
]


def build(name: str, cells: list[tuple[str, str]], quick: bool) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(s) if kind == "md" else nbformat.v4.new_code_cell(s)
                for kind, s in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()
    return nb


NOTEBOOKS = {"scaling_175b_fabrics.ipynb": SCALING, "systems_time_cost.ipynb": SYSTEMS,
             "fleet_time_energy_cost.ipynb": FLEET}

if __name__ == "__main__":
    only = [a for a in sys.argv[1:] if a.endswith(".ipynb")]   # build just these
    for fname, cells in NOTEBOOKS.items():
        if only and fname not in only:
            continue
        nbformat.write(build(fname, cells, "--quick" in sys.argv), HERE / fname)
        print("wrote", fname)
