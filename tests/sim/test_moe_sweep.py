"""Sweeps over expert parallelism: ep/etp candidates, reasons for infeasible EP plans,
the closed form against the DES on MoE plans."""

from __future__ import annotations

import pandas as pd

from sim.sweep import run, spec

TINY = {"layers": 4, "hidden": 1024, "heads": 8, "vocab": 1024, "seq_len": 1024,
        "activation": "swiglu", "norm": "rmsnorm", "bias": False, "rope": True,
        "tied_embeddings": False,
        "moe": {"experts": 8, "top_k": 2, "expert_ffn_hidden": 2048, "dense_layers": 1}}
SWEEP = {"base": {"cluster": {"system": "dgx-h100", "nodes": 2},
                  "workload": {"kind": "training", "model": TINY, "global_batch": 32}},
         "plans": {"tp": [1, 2], "pp": [1, 2], "vpp": [1], "micro_batch": [1],
                   "recompute": ["none"], "zero": [1], "sequence_parallel": [True],
                   "ep": [1, 2, 4, 8, 3], "etp": [1, 2]}}


def test_sweep_searches_ep_and_etp(tmp_path):
    out = tmp_path / "s.parquet"
    res = run.run(spec.parse(SWEEP), run.Options(out=str(out), progress=False, verify_top=6))
    df = pd.read_parquet(out)
    ok = df[df.status == "ok"]
    assert set(ok.ep) == {1, 2, 4, 8} and set(ok.etp) == {1, 2}
    # MoE parallel folding: ep*etp divides the tp*dp ranks of a stage
    assert ((ok.tp * ok.dp) % (ok.ep * ok.etp) == 0).all()
    bad = df[df.status != "ok"]
    assert "indivisible: experts" in set(bad.reason)                  # ep = 3 of 8 experts
    assert (bad[bad.ep == 3].reason == "indivisible: experts").all()
    # The closed form summarises the pipeline by a formula; with a dense first layer the
    # stages differ, and it stays within 12% of the DES here (1-2% without pipelining).
    v = df.dropna(subset=["des_iteration_time_s"])
    assert len(v) == 6 and (v.des_rel_error.abs() < 0.12).all()
    assert (v[v.pp == 1].des_rel_error.abs() < 0.03).all()
    assert res["feasible"] == len(ok)
