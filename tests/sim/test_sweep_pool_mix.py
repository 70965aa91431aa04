"""A sweep over the pool mix (how many H100 and B200 nodes) under a budget."""

import pandas as pd
import pytest

from sim.sweep import run, spec


def mix(h, b):
    return [{"name": "h100", "system": "dgx-h100", "nodes": h},
            {"name": "b200", "system": "dgx-b200", "nodes": b}]


SWEEP = {"base": {"cluster": {"pools": mix(1, 1)},
                  "workload": {"model": "megatron-7.5b", "global_batch": 64,
                               "parallel": {"tp": 8, "pp": 4}}},
         "axes": {"cluster.pools": [mix(1, 3), mix(2, 2), mix(3, 1)]},
         "budget_usd_per_hour": 140.0}


def test_pool_mix_sweep_under_budget(tmp_path):
    res = run.run(spec.parse(SWEEP), run.Options(out=str(tmp_path / "m.parquet"), progress=False))
    df = pd.read_parquet(tmp_path / "m.parquet").set_index("pool_mix")
    # prices.yaml: H100 3.00, B200 5.50 USD per GPU-hour, 8 GPUs a node
    for h, b in ((1, 3), (2, 2), (3, 1)):
        assert df.loc[f"h100:{h} b200:{b}", "usd_per_hour"] == pytest.approx(8 * (3.0 * h + 5.5 * b))
    assert df.loc["h100:1 b200:3", "status"] == "over_budget"        # 156 USD/h > 140
    ok = df[df.status == "ok"]
    # more B200 stages is faster; within the budget the best mix is 2 + 2
    assert ok.loc["h100:2 b200:2", "tokens_per_s"] > ok.loc["h100:3 b200:1", "tokens_per_s"]
    assert res["top"][0]["pool_mix"] == "h100:2 b200:2"
    assert res["rejected"] == {"over budget": 1}


def test_pool_mix_by_energy_with_des_verification(tmp_path):
    res = run.run(spec.parse(SWEEP | {"objective": "energy"}),
                  run.Options(out=str(tmp_path / "e.parquet"), progress=False, verify_top=2))
    df = pd.read_parquet(tmp_path / "e.parquet")
    ok = df[df.status == "ok"]
    # pooled rows are simulated in stage 1: verifying them gives the same numbers
    verified = ok[ok.des_status == "ok"]
    assert len(verified) == 2
    assert (verified.des_iteration_time_s == verified.iteration_time_s).all()
    assert res["top"][0]["joules_per_token"] == ok.joules_per_token.min()
    assert res["pareto_energy"]


def test_pool_mix_from_the_cli_by_nodes_per_pool(tmp_path, monkeypatch, capsys):
    """`clustersim sweep` with one axis per pool's node count (list index in the key)."""
    import json

    import yaml

    from tests.sim.hardening_helpers import cli, one_error_line
    spec_file = tmp_path / "mix.yaml"
    spec_file.write_text(yaml.safe_dump({
        "base": SWEEP["base"] | {"cluster": {"pools": mix(2, 2)}},
        "axes": {"cluster.pools.0.nodes": [1, 2, 3], "cluster.pools.1.nodes": [1, 2, 3]},
        "budget_usd_per_hour": 140.0}))
    code, out, err = cli(monkeypatch, capsys, "sweep", spec_file, "--out",
                         tmp_path / "mix.parquet", "--format", "json", limit_s=120)
    assert code == 0, err
    res = json.loads(out)
    # pp=4 stages of 8 GPUs need 4 nodes: 6 of the 9 mixes do not split; of the three that
    # do, 1 + 3 costs 8 x (3.00 + 3 x 5.50) = 156 USD/h > 140
    assert res["evaluated"] == 9 and res["feasible"] == 2
    assert res["rejected"]["over budget"] == 1
    assert [r["pool_mix"] for r in res["top"]] == ["h100:2 b200:2", "h100:3 b200:1"]
    assert all(r["usd_per_hour"] <= 140 for r in res["top"])
    # an index past the list: one line, exit code 2
    spec_file.write_text(yaml.safe_dump({"base": SWEEP["base"],
                                         "axes": {"cluster.pools.2.nodes": [1, 2]}}))
    code, _, err = cli(monkeypatch, capsys, "sweep", spec_file, "--out", tmp_path / "bad.parquet")
    assert code == 2
    assert "'2' must index the list's 2 entries" in one_error_line(err)


def test_set_indexes_a_list():
    from hw_models.errors import ClusterSimError
    from sim.scenario import apply_overrides
    data = {"cluster": {"pools": mix(1, 1)}}
    apply_overrides(data, ["cluster.pools.1.nodes=4", "cluster.pools.0.system=dgx-h200"])
    assert data["cluster"]["pools"] == [{"name": "h100", "system": "dgx-h200", "nodes": 1},
                                        {"name": "b200", "system": "dgx-b200", "nodes": 4}]
    with pytest.raises(ClusterSimError, match="'x' must index the list's 2 entries"):
        apply_overrides(data, ["cluster.pools.x.nodes=4"])
