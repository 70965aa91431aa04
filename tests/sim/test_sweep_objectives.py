"""Sweeps optimise for time, cost or energy and report the Pareto fronts."""

import pandas as pd

from sim.sweep import run, spec
from sim.sweep.summary import pareto, ranked

SWEEP = {"base": {"cluster": {"system": "dgx-a100", "nodes": 2},
                  "workload": {"model": "megatron-1.7b", "global_batch": 32}},
         "plans": {"micro_batch": [1, 2], "vpp": [1], "zero": [0, 1],
                   "recompute": ["none", "full"], "sequence_parallel": [False]},
         "axes": {"cluster.system": ["dgx-a100", "dgx-h100"]}}


def _run(tmp_path, objective):
    res = run.run(spec.parse({**SWEEP, "objective": objective}),
                  run.Options(out=str(tmp_path / f"{objective}.parquet"), progress=False,
                              verify_top=6))
    return res, pd.read_parquet(tmp_path / f"{objective}.parquet")


def test_cost_and_energy_objectives(tmp_path):
    res, df = _run(tmp_path, "energy")
    verified = df[df.des_joules_per_token.notna()]
    assert len(verified) == 6 and res["objective"] == "energy"
    # the best row has the least energy per token of the verified ones
    assert res["top"][0]["des_joules_per_token"] == verified.des_joules_per_token.min()
    front = res["pareto_energy"]
    assert front and all(a["tokens_per_s"] < b["tokens_per_s"] for a, b in zip(front, front[1:], strict=False))
    cheapest = ranked(df, "cost").iloc[0]
    ok = df[df.status == "ok"]
    best_cost = ok.des_cost_usd_per_mtoken.fillna(ok.usd_per_mtoken).min()
    assert cheapest.des_cost_usd_per_mtoken == best_cost or cheapest.usd_per_mtoken == best_cost


def test_pareto_front_by_hand():
    df = pd.DataFrame({"id": [0, 1, 2, 3], "status": "ok", "tokens_per_s": [10, 20, 15, 30],
                       "c": [1.0, 2.0, 3.0, 2.5]})
    # 2 is beaten by 1 (cheaper and faster); the front is 0, 1, 3
    assert [p["id"] for p in pareto(df, "c")] == [0, 1, 3]
