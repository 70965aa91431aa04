"""Megatron-LM's H100 weak-scaling table (README "Performance Benchmarking"): predicted vs
published model TFLOP/s per GPU for GPT models of 1.7B to 462B on 48 to 6144 H100s.

Data nobody fitted anything on, at scale. The table gives model shape, GPUs, TP, PP, DP,
global batch and sequence length (4096, vocab 131072) and says the runs overlap the DP,
TP and PP communication (--overlap-grad-reduce, --overlap-param-gather,
--tp-comm-overlap). What it does not state is taken as Megatron-Core's defaults for such
runs: bf16 (the MFU basis is the bf16 peak), micro batch 1 (Megatron-LM has no default for
it: an assumption), the distributed optimizer
(required by --overlap-param-gather; ``zero: 1``) with fp32 gradient reduction, sequence
parallelism with TP, no activation recompute, FlashAttention, GELU MLP of 4h, the
non-interleaved 1F1B schedule (whose pipeline sends block: Megatron-Core turns
overlap_p2p_comm off without interleaving, so batch_p2p_comm and batch_p2p_sync
synchronize, ``p2p_blocking``), the unfused vocab-parallel cross-entropy (no
--cross-entropy-loss-fusion). --tp-comm-overlap is modelled as ``tp_comm_overlap: ring``
(Megatron's userbuffers: each sequence-parallel all-gather / reduce-scatter pipelined
with its GEMM in tp chunks, workloads/stage_ops.py); the TP=1 row has nothing to overlap.
The published metric is Megatron's model
FLOPs, 72 B s L h^2 (1 + s/(6h) + V/(12 L h)) per iteration (``model_flops``), divided
by the step time. ``--sensitivity`` prints every row with one unstated setting changed
(``VARIANTS``; docs/accuracy.md).
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import resources

import pandas as pd

from calibration.validate_megatron import prediction_fields
from hw_models.profile import Profile, load_builtin
from sim.scenario import parse
from sim.simulate import simulate
from workloads.model import model_flops, resolve

CSV = resources.files("calibration").joinpath("reference", "training",
                                              "megatron_h100_weak_scaling.csv")
SEQ, VOCAB, GPUS_PER_NODE = 4096, 131072, 8


def rows() -> pd.DataFrame:
    df = pd.read_csv(CSV, comment="#")
    setting = df.other_settings.str
    df["heads"] = setting.extract(r"attention heads (\d+)", flags=re.I)[0].astype(int)
    df["hidden"] = setting.extract(r"hidden (\d+)", flags=re.I)[0].astype(int)
    df["name"] = df.model.str.extract(r"^(GPT [\d.]+B)")[0]
    return df


def scenario_for(r) -> dict:
    model = {"layers": int(r.num_layers_run), "hidden": int(r.hidden), "heads": int(r.heads),
             "vocab": VOCAB, "seq_len": SEQ, "activation": "gelu"}
    tp = int(r.tp)
    return {"name": f"mlm-h100-{r.name}", "cluster": {"system": "dgx-h100",
                                                      "nodes": int(r.num_gpus) // GPUS_PER_NODE},
            "workload": {"kind": "training", "model": model,
                         "global_batch": int(r.global_batch_seqs), "micro_batch": 1,
                         "precision": "bf16",
                         "parallel": {"tp": tp, "pp": int(r.pp), "sequence_parallel": tp > 1,
                                      "zero": 1,
                                      "tp_comm_overlap": "ring" if tp > 1 else "none"},
                         "recompute": "none", "attention": "flash",
                         "cross_entropy_fusion": False, "p2p_blocking": True,
                         "overlap_grad_reduce": True, "overlap_param_gather": True},
            "sim": {"fidelity": "analytical"}}


def run(band: bool = False, variant: str = "as assumed") -> pd.DataFrame:
    """One row per published configuration; ``variant`` changes one unstated setting
    (``VARIANTS``)."""
    out = []
    change, prof = VARIANTS[variant], variant_profile(variant)
    for r in rows().itertuples():
        sc = scenario_for(r)
        change(sc, r)
        res = simulate(parse(sc, sc["name"]), prof, band=band, residuals=False)
        per_s = model_flops(resolve(sc["workload"]["model"]),
                            int(r.global_batch_seqs) * SEQ) / int(r.num_gpus) / 1e12
        rec = {"model": r.name, "gpus": int(r.num_gpus), "tp": int(r.tp), "pp": int(r.pp),
               "batch": int(r.global_batch_seqs),
               **prediction_fields(res, per_s, float(r.model_tflops_per_gpu), band),
               "memory_gib": round(res.memory_peak_gib, 1)}
        out.append(rec)
    return pd.DataFrame(out)


# What the table does not state, one setting at a time (docs/accuracy.md, "Weak scaling,
# 16B-70B: where the time goes"). A check of how much each could move the rows, not a fit:
# the suite keeps the settings of ``scenario_for``.
def _bf16_grads(sc: dict, r) -> None:
    """Megatron-LM's --grad-reduce-in-bf16 (its default with bf16 is fp32 reduction)."""
    sc["workload"]["grad_reduce_bytes"] = 2


def _one_microbatch(sc: dict, r) -> None:
    """PP=1 rows with the replica's whole batch in one microbatch (as SC'21's
    run_table_1.sh did for its PP=1 rows that fit); PP>1 rows keep micro-batch 1."""
    if int(r.pp) == 1:
        sc["workload"]["micro_batch"] = int(r.global_batch_seqs) // int(r.dp)


VARIANTS = {"as assumed": lambda sc, r: None,
            "bf16 gradient reduction": _bf16_grads,
            "one microbatch on PP=1 rows": _one_microbatch,
            "NIC at NCCL's NDR figure": lambda sc, r: None}

# NCCL maintainers: 46-49 GB/s per NDR 400 Gb/s NIC inter-node
# (reference/collectives/nccl_tuning_constants.md); the h100 profile's network curve is
# fitted on a four-node H100 nccl-tests all_reduce (eff_max 0.87 of the NIC).
NDR_NIC_GB_S = (46.0, 49.0)
NDR_LINE_GB_S = 400 / 8


def variant_profile(variant: str) -> Profile | None:
    """The h100 profile with the network curve's plateau at the NDR figure, for that
    variant; None (the scenario's own profile) otherwise."""
    if variant != "NIC at NCCL's NDR figure":
        return None
    prof = load_builtin("h100")
    eff = sum(NDR_NIC_GB_S) / 2 / NDR_LINE_GB_S
    net = prof.collectives["network"].model_copy(update={"eff_max": eff})
    return prof.model_copy(update={"collectives": {**prof.collectives, "network": net}})


def sensitivity() -> pd.DataFrame:
    """Error per row (TFLOP/s per GPU, %) under each variant, then median and worst |error|."""
    base = run()
    out = base[["model", "gpus", "tp", "pp", "published_tflops"]].copy()
    for v in VARIANTS:
        out[v] = base.error_pct if v == "as assumed" else run(variant=v).error_pct
    errs = out[list(VARIANTS)].abs()
    blank = dict.fromkeys(("gpus", "tp", "pp", "published_tflops"), "")
    summary = pd.DataFrame([{"model": "median |error|", **blank, **errs.median().round(1).to_dict()},
                            {"model": "worst |error|", **blank, **errs.max().round(1).to_dict()}])
    return pd.concat([out.astype({c: object for c in blank}), summary], ignore_index=True)


SUITE = "megatron-h100"


def dashboard_rows() -> list[dict]:
    """Rows for ``clustersim validate all`` (calibration/dashboard.py)."""
    return [{"name": f"{r.model} {r.gpus} GPUs", "predicted": r.predicted_tflops,
             "published": r.published_tflops, "unit": "TFLOP/s", "kind": "rate",
             "low": getattr(r, "tflops_low", None), "high": getattr(r, "tflops_high", None)}
            for r in run(band=True).itertuples()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sensitivity", action="store_true",
                    help="error per row under each unstated setting changed in turn")
    args = ap.parse_args(argv)
    print((sensitivity() if args.sensitivity else run()).to_string(index=False, na_rep=""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
