"""Energy validation: LLaMA-1's published training energy (Touvron et al. 2023, Table 15).

The paper's energy is GPU-hours x 400 W (the A100's TDP) x PUE 1.1: a nameplate figure,
not a meter reading. Two things are compared, each against its published counterpart:

- GPU-hours: 1.0T / 1.4T tokens at the simulated tokens/s on 2048 DGX A100 GPUs;
- energy: the simulated GPU-board energy of those steps x PUE 1.1 (the paper counts the
  GPUs only, so hosts and switches are left out here), and the paper's own formula
  applied to the simulated GPU-hours, which isolates the time error.

Plans are not published beyond "model and sequence parallelism" with selective
activation checkpointing; each row uses the fastest plan that fits in memory among
tp in {1, 2, 4, 8} x pp in {1, 2, 4} (ZeRO-1, sequence parallel when tp > 1, selective
recompute, micro-batch 1), the choice a user tuning the run would make; it is printed
with the row. The plan is chosen on simulated time, never on the published figure.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from hw_models.errors import ClusterSimError
from sim.scenario import parse
from sim.simulate import simulate

REF = resources.files("calibration").joinpath("reference", "energy", "llama1_table15.csv")
NODE_REF = resources.files("calibration").joinpath("reference", "energy", "h100_node_power.csv")
GPUS = 2048
PUE = 1.1
PLANS = [(tp, pp) for tp in (1, 2, 4, 8) for pp in (1, 2, 4)]


def scenario_for(row, tp: int, pp: int) -> dict:
    model = {"layers": int(row.layers), "hidden": int(row.dim), "heads": int(row.heads),
             "ffn_hidden": int(row.ffn_hidden), "vocab": 32000, "seq_len": 2048,
             "activation": "swiglu", "norm": "rmsnorm", "bias": False, "rope": True,
             "tied_embeddings": False}
    return {"name": row.model, "cluster": {"system": "dgx-a100", "nodes": GPUS // 8, "pue": PUE},
            "workload": {"model": model, "global_batch": 2048, "micro_batch": 1,
                         "precision": "bf16", "recompute": "selective",
                         "parallel": {"tp": tp, "pp": pp, "zero": 1,
                                      "sequence_parallel": tp > 1}}}


def validate(models: list[str] | None = None) -> pd.DataFrame:
    df = pd.read_csv(REF, comment="#")
    if models:
        df = df[df.model.isin(models)]
    rows = []
    for row in df.itertuples():
        (tp, pp), r = best_plan(row)
        steps = row.tokens_t * 1e12 / (2048 * 2048)
        gpu_hours = steps * r.iteration_time_s * GPUS / 3600
        board_mwh = steps * r.extra["energy"]["gpu_j"] * PUE / 3.6e9
        rows.append({"model": row.model, "plan": f"tp{tp} pp{pp}",
                     "gpu_hours_pub": row.gpu_hours, "gpu_hours_sim": gpu_hours,
                     "gpu_hours_err_pct": 100 * (gpu_hours / row.gpu_hours - 1),
                     "avg_power_w": r.extra["avg_power_w_per_gpu"],
                     "mwh_pub": row.energy_mwh, "mwh_sim": board_mwh,
                     "mwh_err_pct": 100 * (board_mwh / row.energy_mwh - 1),
                     "mwh_pub_formula_on_sim_hours": gpu_hours * row.gpu_power_w * PUE / 1e6})
    return pd.DataFrame(rows)


def best_plan(row):
    """The fastest (tp, pp) of PLANS that fits, with its result."""
    best = None
    for tp, pp in PLANS:
        if row.layers % pp:
            continue
        try:
            r = simulate(parse(scenario_for(row, tp, pp), row.model), band=False)
        except ClusterSimError:          # out of memory or an infeasible split
            continue
        if best is None or r.iteration_time_s < best[1].iteration_time_s:
            best = ((tp, pp), r)
    if best is None:
        raise ClusterSimError(f"{row.model}: no plan of {PLANS} fits on {GPUS} A100-80GB")
    return best


def table(df: pd.DataFrame) -> str:
    lines = [f"{'model':11s} {'plan':11s} {'GPU-h pub':>10} {'GPU-h sim':>10} {'err':>7} "
             f"{'W/GPU':>6} {'MWh pub':>8} {'MWh sim':>8} {'err':>7} {'400W x sim h':>12}"]
    for r in df.itertuples():
        lines.append(f"{r.model:11s} {r.plan:11s} {r.gpu_hours_pub:10,.0f} {r.gpu_hours_sim:10,.0f} "
                     f"{r.gpu_hours_err_pct:+6.1f}% {r.avg_power_w:6.0f} {r.mwh_pub:8.0f} "
                     f"{r.mwh_sim:8.0f} {r.mwh_err_pct:+6.1f}% {r.mwh_pub_formula_on_sim_hours:12.0f}")
    return "\n".join(lines)


def node_power() -> dict:
    """Node power of Llama 2 13B training on one DGX H100 (the fastest plan of tp in
    {1, 2, 4, 8} with ZeRO-1 or ZeRO-3) against the metered H100 nodes of
    h100_node_power.csv: Newkirk et al.'s 76% of the rating for compute-intensive training,
    Latif et al.'s 8.48 kW maximum, and the one metered MLPerf Training power result of an
    H100 node (SMC, v4.0, Llama 2 70B LoRA: another workload, shown, not fitted)."""
    ref = pd.read_csv(NODE_REF, comment="#").set_index("quantity").value_kw
    best = None
    for tp in (1, 2, 4, 8):
        for zero in (1, 3):
            sc = {"cluster": {"system": "dgx-h100", "nodes": 1},
                  "workload": {"model": "llama2-13b", "global_batch": 64, "micro_batch": 1,
                               "recompute": "selective", "parallel": {"tp": tp, "zero": zero}}}
            try:
                r = simulate(parse(sc, "llama2-13b"), band=False)
            except ClusterSimError:
                continue
            if best is None or r.iteration_time_s < best[1].iteration_time_s:
                best = (f"tp{tp} zero{zero}", r)
    plan, r = best
    e = r.extra["energy"]
    kw = (e["gpu_j"] + e["host_j"]) / r.iteration_time_s / 1e3
    typical = ref["compute_intensive_training_node_power"]
    mlperf = ref["mlperf_v40_llama2_70b_lora_node_power"]
    return {"plan": plan, "mfu": r.mfu, "node_kw_sim": kw, "node_kw_typical_pub": typical,
            "err_pct": 100 * (kw / typical - 1), "node_kw_max_pub": ref["max_observed_node_power"],
            "node_kw_mlperf_pub": mlperf, "mlperf_err_pct": 100 * (kw / mlperf - 1)}


def node_table(row: dict) -> str:
    return (f"Llama 2 13B on one DGX H100 ({row['plan']}, MFU {row['mfu']:.1%}): node "
            f"{row['node_kw_sim']:.2f} kW simulated; published {row['node_kw_typical_pub']:.2f} kW "
            f"(76% of 10.2, compute-intensive training) -> {row['err_pct']:+.1f}%; measured "
            f"maximum {row['node_kw_max_pub']:.2f} kW\n"
            f"  against MLPerf Training v4.0's metered Llama 2 70B LoRA node (SMC, 8x H100 SXM, "
            f"immersion-cooled, DC): {row['node_kw_mlperf_pub']:.2f} kW -> "
            f"{row['mlperf_err_pct']:+.1f}% (another workload: a LoRA fine-tune, no weight "
            "gradients of the frozen base; a node without fans)")


def report() -> tuple[dict, str]:
    """(data, text) of ``clustersim validate energy-llama1``."""
    df, node = validate(), node_power()
    return {"rows": df.to_dict("records"), "node_power": node}, table(df) + "\n\n" + node_table(node)


if __name__ == "__main__":
    print(report()[1])
