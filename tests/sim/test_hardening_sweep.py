"""Sweeps count their space first, refuse huge ones, and enumerate it lazily."""

from __future__ import annotations

import itertools
from concurrent.futures import Future

import pytest
import yaml

from hw_models.errors import ClusterSimError
from sim.sweep import plans, run, spec
from sim.sweep.executors import windowed
from tests.sim.hardening_helpers import cli, one_error_line, time_limit

BASE = {"cluster": {"system": "dgx-a100", "nodes": 4},
        "workload": {"kind": "training", "model": "megatron-7.5b", "global_batch": 256}}
HUGE = {"base": BASE, "plans": "auto",
        "axes": {"cluster.nodes": {"start": 1, "stop": 2000, "step": 1},
                 "cluster.network.nic_gbps": [100, 200, 400, 800],
                 "cluster.system": {"values": ["dgx-a100", "dgx-h100", "dgx-b200"]}}}


def test_huge_space_is_refused_quickly(tmp_path, monkeypatch, capsys):
    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump(HUGE))
    code, _, err = cli(monkeypatch, capsys, "sweep", path, "--out", tmp_path / "o.parquet",
                       limit_s=30)
    assert code == 2
    line = one_error_line(err)
    assert "above the limit of 1,000,000" in line and "--max-configs" in line
    assert not (tmp_path / "o.parquet").exists()


def test_enumeration_is_lazy():
    sw = spec.parse(HUGE)
    with time_limit(10):
        first = list(itertools.islice(run.iter_configurations(sw), 5))
    assert [c[0] for c in first] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("space", [
    {}, {"micro_batch": "divisors", "batch": "max"}, {"tp": [1, 2, 3], "pp": [2, 4]},
    {"uneven_layers": True, "vpp": [1, 3]},
])
@pytest.mark.parametrize("world, batch", [(32, 256), (24, 96), (7, 7)])
@pytest.mark.parametrize("name", ["megatron-7.5b", "mixtral-8x7b"])        # dense, MoE (ep, etp)
def test_count_is_the_length_of_the_enumeration(space, world, batch, name):
    from workloads.model import resolve
    ps = spec.PlanSpace(**space)
    model = resolve(name)
    assert plans.count(ps, model, world, batch) == len(list(plans.candidates(ps, model, world, batch)))


def test_max_configs_flag(tmp_path, monkeypatch, capsys):
    small = {"base": BASE, "plans": {"tp": [2, 4], "pp": [1, 2], "vpp": [1], "micro_batch": [1],
                                     "recompute": ["none"], "zero": [0]},
             "axes": {"cluster.nodes": [2, 4]}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(small))
    n = run.count_configurations(spec.load(path), 10**6)
    assert n == len(list(run.iter_configurations(spec.load(path)))) == 16  # 2 nodes x 2 tp x 2 pp x 2 sp
    code, _, err = cli(monkeypatch, capsys, "sweep", path, "--out", tmp_path / "o.parquet",
                       "--max-configs", str(n - 1))
    assert code == 2 and f"{n:,} configurations" in one_error_line(err)
    code, out, err = cli(monkeypatch, capsys, "sweep", path, "--out", tmp_path / "o.parquet",
                         "--max-configs", str(n), "--format", "json")
    assert code == 0 and (tmp_path / "o.parquet").is_file()


def test_sweep_without_base_is_refused():
    with pytest.raises(ClusterSimError, match="no 'base' scenario"):
        spec.parse({"plans": "auto", "axes": {"cluster.nodes": [1, 2]}})


def test_windowed_keeps_few_tasks_in_flight():
    in_flight, peak = set(), [0]

    def submit(a):
        f = Future()
        f.set_result(a[0] * 2)
        in_flight.add(f)
        peak[0] = max(peak[0], len(in_flight))
        return f

    def wait_one(pending):
        f = next(iter(pending))
        in_flight.discard(f)
        return f
    out = dict(windowed(submit, wait_one, ((i,) for i in range(1000)), window=3))
    assert out == {i: 2 * i for i in range(1000)} and peak[0] == 3
