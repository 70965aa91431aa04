"""Scenario-level checks of the long-context, schedule and FP8 keys: the examples run,
bad combinations give one clear line and exit code 2."""

import subprocess
import sys
from pathlib import Path

import pytest

from sim import scenario
from sim.simulate import simulate

ROOT = Path(__file__).resolve().parents[2]


def small(**workload):
    w = {"model": "llama3-8b", "seq_len": 8192, "global_batch": 16, "micro_batch": 1,
         "precision": "bf16", "parallel": {"tp": 2, "pp": 2}, "recompute": "selective"}
    w.update(workload)
    return {"name": "t", "cluster": {"system": "dgx-h100", "nodes": 1}, "workload": w}


@pytest.mark.parametrize("example", ["llama31_405b_cp2_vpp.yaml", "llama3_8b_128k_cp16.yaml"])
def test_examples_simulate(example):
    res = simulate(scenario.load(ROOT / "examples" / example), band=False)
    assert res.iteration_time_s > 0 and res.memory_peak_gib < 80


def test_acceptance_scenarios_are_what_the_issue_asks():
    """Llama 3.1 405B with cp 2, virtual stages and uneven stages (126 layers + embedding +
    loss over 64 virtual stages: 1, 2 x 62, 1); a 128k-token run with cp 16."""
    from sim.simulate import resolve_setup
    big = resolve_setup(scenario.load(ROOT / "examples" / "llama31_405b_cp2_vpp.yaml"))
    counts = big.plan.pipeline(big.model.layers).stage_layer_counts
    assert big.plan.cp == 2 and big.plan.vpp == 8
    assert counts == (1,) + (2,) * 62 + (1,)
    long = resolve_setup(scenario.load(ROOT / "examples" / "llama3_8b_128k_cp16.yaml"))
    assert long.model.seq_len == 131072 and long.plan.cp == 16


@pytest.mark.parametrize("schedule", ["zb-h1", "zb-v", "dualpipe", "dualpipev"])
def test_split_schedules_shrink_the_bubble(schedule):
    """On real costs too the split-backward schedules idle less than 1F1B (the V shapes
    put embedding and head on rank 0, so their step can still be longer)."""
    def run(sched):
        return simulate(scenario.parse(small(global_batch=32, parallel={
            "tp": 2, "pp": 4, "schedule": sched, "zero": 1})), band=False)
    assert run(schedule).breakdown["bubble"] < run("1f1b").breakdown["bubble"]


def test_fp8_is_faster_than_bf16_on_h100():
    bf16 = simulate(scenario.parse(small()), band=False).iteration_time_s
    fp8 = simulate(scenario.parse(small(precision="fp8")), band=False).iteration_time_s
    assert fp8 < bf16


@pytest.mark.parametrize("overrides,msg", [
    (["cluster.system=dgx-a100", "workload.precision=fp8"], "A100.*does not support fp8"),
    (["workload.precision=fp8", "workload.fp8.recipe=mxfp8"], "needs mxfp8 tensor cores"),
    (["workload.fp8.recipe=delayed"], "workload.fp8 is set but precision is 'bf16'"),
    (["workload.parallel.cp=2", "workload.attention=unfused"], "needs attention: flash"),
    (["workload.parallel.schedule=dualpipe", "workload.global_batch=4"], "at least 2\\*pp"),
    (["workload.parallel.tp_comm_overlap=ring"], "needs sequence_parallel"),
    (["workload.parallel.cp_kind=spiral"], "cp_kind"),
    (["workload.parallel.schedule=zb-h1", "workload.parallel.vpp=2"], "one chunk per rank"),
])
def test_bad_keys_exit_2_with_one_line(tmp_path, overrides, msg):
    import yaml
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(small()))
    cmd = [sys.executable, "-m", "sim.cli.main", "simulate", str(path)]
    for o in overrides:
        cmd += ["--set", o]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr
    import re
    assert re.search(msg, lines[0]), lines[0]


def test_hybrid_cp_takes_ulysses_inside_a_node():
    """TP 2 on 8-GPU nodes leaves 4 CP ranks per node: Ulysses over 4, ring over 16/4."""
    from sim.simulate import resolve_setup
    sc = scenario.load(ROOT / "examples" / "llama3_8b_128k_cp16.yaml",
                       ["workload.parallel.cp_kind=hybrid"])
    plan = resolve_setup(sc).plan
    assert plan.ulysses == 4 and plan.cp // plan.ulysses == 4
    from workloads import training
    g = training.build(resolve_setup(sc).model, plan, training.TrainingOptions())
    fwd = next(n for n in g.nodes if n.name == "F0_c0").op.ops
    from workloads.graph import Collective, Overlap
    a2a = next(o for o in fwd if isinstance(o, Collective) and o.kind == "all_to_all")
    ring = next(o for o in fwd if isinstance(o, Overlap) and o.name == "cp_ring_attention")
    assert a2a.group.ranks == (0, 2, 4, 6)            # CP ranks of one node (tp 2 apart)
    assert ring.hidden[0].group.ranks == (0, 8, 16, 24) and ring.steps == 3
