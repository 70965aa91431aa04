"""Megatron-LM's H100 weak-scaling table (README "Performance Benchmarking"): predicted vs
published model TFLOP/s per GPU for GPT models of 1.7B to 462B on 48 to 6144 H100s.

Data nobody fitted anything on, at scale. The table gives model shape, GPUs, TP, PP, DP,
global batch and sequence length (4096, vocab 131072) and says the runs overlap the DP,
TP and PP communication (--overlap-grad-reduce, --overlap-param-gather,
--tp-comm-overlap). What it does not state is taken as Megatron-Core's defaults for such
runs: bf16 (the MFU basis is the bf16 peak), micro batch 1, the distributed optimizer
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
by the step time.
"""

from __future__ import annotations

import re
from importlib import resources

import pandas as pd

from calibration.validate_megatron import prediction_fields
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


def run(band: bool = False) -> pd.DataFrame:
    out = []
    for r in rows().itertuples():
        sc = scenario_for(r)
        res = simulate(parse(sc, sc["name"]), band=band, residuals=False)
        per_s = model_flops(resolve(sc["workload"]["model"]),
                            int(r.global_batch_seqs) * SEQ) / int(r.num_gpus) / 1e12
        rec = {"model": r.name, "gpus": int(r.num_gpus), "tp": int(r.tp), "pp": int(r.pp),
               "batch": int(r.global_batch_seqs),
               **prediction_fields(res, per_s, float(r.model_tflops_per_gpu), band),
               "memory_gib": round(res.memory_peak_gib, 1)}
        out.append(rec)
    return pd.DataFrame(out)


SUITE = "megatron-h100"


def dashboard_rows() -> list[dict]:
    """Rows for ``clustersim validate all`` (calibration/dashboard.py)."""
    return [{"name": f"{r.model} {r.gpus} GPUs", "predicted": r.predicted_tflops,
             "published": r.published_tflops, "unit": "TFLOP/s", "kind": "rate",
             "low": getattr(r, "tflops_low", None), "high": getattr(r, "tflops_high", None)}
            for r in run(band=True).itertuples()]


if __name__ == "__main__":
    print(run().to_string(index=False, na_rep=""))
