"""Sweeps: closed form vs DES, resume, Dask vs local, bad sweep files."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from scipy.stats import spearmanr
from typer.testing import CliRunner

from hw_models.errors import ClusterSimError
from sim.cli.main import app
from sim.sweep import run, spec

BASE = {"cluster": {"system": "dgx-a100", "nodes": 2},
        "workload": {"kind": "training", "model": "megatron-1.7b", "global_batch": 64}}
SMALL = {"base": BASE, "plans": {"micro_batch": [1, 2], "vpp": [1, 2], "zero": [0, 1],
                                 "recompute": ["none", "full"]},
         "axes": {"cluster.network.nic_gbps": [100, 200]}}


def _run(tmp_path, name="r", **kw) -> tuple[dict, pd.DataFrame]:
    out = tmp_path / f"{name}.parquet"
    res = run.run(spec.parse(SMALL), run.Options(out=str(out), progress=False, **kw))
    return res, pd.read_parquet(out)


def test_closed_form_ranks_like_the_des(tmp_path):
    res, df = _run(tmp_path, verify_top=8)
    v = df.dropna(subset=["des_iteration_time_s"])
    assert len(v) == 8
    assert (v.des_rel_error.abs() < 0.03).all()
    rho = spearmanr(v.iteration_time_s, v.des_iteration_time_s).statistic
    assert rho > 0.9
    assert res["best"]["scenario"]["workload"]["model"] == "megatron-1.7b"


def test_auto_plans_honour_divisibility(tmp_path):
    res, df = _run(tmp_path)
    ok = df[df.status == "ok"]
    assert res["feasible"] == len(ok) > 0
    assert (24 % ok.tp == 0).all() and (24 % (ok.pp * ok.vpp) == 0).all()   # heads, layers
    assert (64 % (ok.dp * ok.micro_batch) == 0).all()
    assert (ok.tp * ok.pp * ok.dp == 16).all()
    bad = df[df.status != "ok"]
    assert set(bad.reason) <= {"indivisible: layers", "indivisible: batch", "indivisible: heads",
                               "indivisible: microbatches", "out of memory"}
    assert sum(res["rejected"].values()) == len(bad)


def test_killed_then_resumed_equals_uninterrupted(tmp_path):
    _, full = _run(tmp_path, "full", chunk_size=16, verify_top=3)
    opts = run.Options(out=str(tmp_path / "k.parquet"), progress=False, chunk_size=16,
                       verify_top=3, stop_after_chunks=2)
    with pytest.raises(run.Interrupted):
        run.run(spec.parse(SMALL), opts)
    assert len(list((tmp_path / "k.parquet.parts").glob("a-*.parquet"))) == 2
    opts.stop_after_chunks, opts.resume = None, True
    res = run.run(spec.parse(SMALL), opts)
    assert res["evaluated"] == len(full)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "k.parquet"), full)


def test_dask_local_cluster_matches_local(tmp_path):
    from dask.distributed import Client, LocalCluster

    from sim.sweep.executors import DaskExecutor
    _, local = _run(tmp_path, "local", chunk_size=32)
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cl, Client(cl) as c:
        out = tmp_path / "dask.parquet"
        run.run(spec.parse(SMALL), run.Options(out=str(out), progress=False, chunk_size=32),
                executor=DaskExecutor(client=c))
    pd.testing.assert_frame_equal(pd.read_parquet(out), local)


@pytest.mark.parametrize("data, words", [
    ({"base": BASE, "plans": "auto", "bogus": 1}, "bogus"),
    ({"base": BASE, "axes": {"cluster.nodes": []}}, "empty axis"),
    ({"base": BASE, "axes": {"cluster.nodes": {"start": 4, "stop": 2}}}, "below start"),
    ({"base": BASE, "axes": {"cluster.nodez": [1]}}, "nodez"),
    ({"base": BASE, "plans": {"tp": []}}, "empty list"),
    ({"base": BASE}, "nothing to sweep"),
])
def test_bad_sweep_files(data, words):
    with pytest.raises(ClusterSimError, match=words):
        spec.parse(data)


def test_impossible_constraints_exit_2(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"base": BASE, "plans": {"tp": [3], "pp": [5]}}))
    with pytest.raises(ClusterSimError, match="no candidate"):
        run.run(spec.load(f), run.Options(out=str(tmp_path / "o.parquet"), progress=False))
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "sim.cli.main", "sweep", str(f), "--out",
                        str(tmp_path / "o.parquet")], capture_output=True, text=True)
    assert r.returncode == 2 and "no candidate" in r.stderr and "Traceback" not in r.stderr


def test_cli_json_summary(tmp_path):
    import json
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(SMALL | {"axes": {}}))
    r = CliRunner().invoke(app, ["sweep", str(f), "--out", str(tmp_path / "o.parquet"),
                                 "--format", "json", "--verify-top", "1"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert {"evaluated", "feasible", "wall_s", "plans_per_s", "best", "rejected"} <= set(out)
    assert out["best"]["des_iteration_time_s"] > 0
