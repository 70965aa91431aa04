"""``workload.recompute_modules``: names checked against Megatron-Core's, exclusive with a
recompute mode, a clear message and exit code 2 from the CLI; a list that names a mode
simulates as that mode."""

import subprocess
import sys

import pytest

from hw_models.errors import ClusterSimError
from sim.scenario import parse

SC = {"cluster": {"system": "dgx-h100", "nodes": 1},
      "workload": {"model": "qwen3-30b-a3b", "global_batch": 16, "seq_len": 1024,
                   "parallel": {"tp": 1, "pp": 1, "ep": 8}, "recompute_modules": ["moe_act", "layernorm"]},
      "sim": {"fidelity": "analytical", "check_memory": False}}


def _with(**workload):
    return SC | {"workload": SC["workload"] | workload}


def test_list_is_parsed_and_names_are_checked():
    assert parse(SC, "x").workload.recompute_modules == ["moe_act", "layernorm"]
    with pytest.raises(ClusterSimError, match="'core_attn', 'moe_act', 'layernorm'.*got 'attn'"):
        parse(_with(recompute_modules=["attn"]), "x")
    with pytest.raises(ClusterSimError, match="not both"):
        parse(_with(recompute="full"), "x")
    with pytest.raises(ClusterSimError, match="moe_router CUDA graph"):
        parse(_with(recompute_modules=["moe"], cuda_graphs=["attn", "moe_router"]), "x")
    assert parse(_with(recompute_modules=["moe"], cuda_graphs=["attn"]), "x")


def test_cli_exits_2_on_an_unknown_module(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("cluster: {system: dgx-h100, nodes: 1}\nworkload: {model: qwen3-30b-a3b, "
                 "global_batch: 16, parallel: {tp: 1, pp: 1, ep: 8}, recompute_modules: [mhc]}\n")
    out = subprocess.run([sys.executable, "-m", "sim.cli.main", "simulate", str(p)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "recompute_modules" in out.stderr and "shared_experts" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_list_naming_a_mode_simulates_as_that_mode():
    from sim.simulate import simulate
    by_list = simulate(parse(SC, "x"), band=False)
    by_mode = simulate(parse(_with(recompute_modules=None, recompute="norm_moe_act"), "x"), band=False)
    assert by_list.iteration_time_s == by_mode.iteration_time_s
    none = simulate(parse(_with(recompute_modules=[]), "x"), band=False)
    assert none.iteration_time_s < by_list.iteration_time_s


def test_a_sweep_keeps_the_list():
    """A sweep over a scenario with recompute_modules builds its plans with the list and
    reports it as one string."""
    from sim.sweep import evaluate
    from workloads.parallel import recompute_label
    ctx = evaluate.context(SC, {})
    plan = evaluate._plan_of(ctx, None)
    assert plan.recompute == ("moe_act", "layernorm")
    assert recompute_label(plan.recompute) == "[moe_act, layernorm]"
    assert evaluate._plan_columns(plan, None)["recompute"] == "[moe_act, layernorm]"
