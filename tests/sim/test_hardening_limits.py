"""Bad input found by fuzzing the examples: negative seeds, huge counts, zero sizes in a
sweep's plan space, unknown topologies, and the wording of union-typed keys. Each is one
`error:` line naming the key and what is allowed, exit code 2, no traceback, no hang."""

from __future__ import annotations

import pytest
import yaml

from tests.sim.hardening_helpers import cli, one_error_line

INFERENCE = "examples/inference_llama3_70b.yaml"
RL = "examples/rl_grpo_llama3_8b.yaml"
RL_POOLS = "examples/rl_pools_b200_h100.yaml"
HETERO = "examples/hetero_h100_b200.yaml"
RUN = "scenarios/llama3_405b_run.yaml"


def refused(monkeypatch, capsys, *args, limit_s: float = 60) -> str:
    code, _, err = cli(monkeypatch, capsys, *args, limit_s=limit_s)
    line = one_error_line(err)
    assert code == 2, err
    return line


@pytest.mark.parametrize("file, key", [
    (INFERENCE, "workload.requests.seed"),          # numpy: "expected non-negative integer"
    (RL, "workload.seed"),
    ("examples/deepseek_v3_h100.yaml", "workload.moe.seed"),
])
def test_negative_seed(monkeypatch, capsys, file, key):
    line = refused(monkeypatch, capsys, "simulate", file, "--set", f"{key}=-1")
    assert f"{key}: Input should be greater than or equal to 0 (got -1)" in line


def test_run_command_reads_like_simulate(tmp_path, monkeypatch, capsys):
    binary = tmp_path / "s.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")           # was a UnicodeDecodeError traceback
    assert "is not UTF-8 text" in refused(monkeypatch, capsys, "run", binary, "--step-time", "1")
    assert "is a directory; give a YAML file" in refused(
        monkeypatch, capsys, "run", tmp_path, "--step-time", "1")


def test_unknown_topology_is_refused_at_analytical_fidelity(monkeypatch, capsys):
    # the analytical model never builds the graph, so a misspelt name used to pass silently
    line = refused(monkeypatch, capsys, "simulate", "--default", "--set",
                   "cluster.network.topology=ring")
    assert "cluster.network.topology: unknown topology 'ring'; allowed: fat-tree, " \
           "multi-plane, none, rail-optimized, torus" in line


@pytest.mark.parametrize("file, key, value, expected", [
    # a union of str | mapping: one statement at the key, no member tags (.str, .dict[...])
    ("--default", "cluster.system", "5",
     "cluster.system: Input should be a valid string or a valid dictionary (got 5)"),
    # int | distribution: the distribution's own error, not the int member's mismatch
    (INFERENCE, "workload.requests.prompt_len", "{dist: uniform, low: 10, high: 5}",
     "workload.requests.prompt_len: high 5 < low 10"),
    # a validator's message: no "Value error," prefix and one "(got 0)"
    (RUN, "workload.checkpoint.every_steps", "0",
     "workload.checkpoint.every_steps: must be a whole number of steps >= 1 or 'auto' (got 0)"),
])
def test_union_and_validator_messages(monkeypatch, capsys, file, key, value, expected):
    args = ["simulate", "--default"] if file == "--default" else ["simulate", file]
    line = refused(monkeypatch, capsys, *args, "--set", f"{key}={value}")
    assert line.endswith(expected), line
    assert line.count("(got") <= 1


@pytest.mark.parametrize("key, value, expected", [
    ("tp", [0], "plans.tp.0: Input should be greater than 0 (got 0)"),          # ZeroDivisionError
    ("pp", [-1], "plans.pp.0: Input should be greater than 0 (got -1)"),         # IndexError
    ("micro_batch", [0], "plans.micro_batch.0: Input should be greater than 0 (got 0)"),
    ("offload_activations", [1.5], "plans.offload_activations.0: Input should be less than "
                                   "or equal to 1 (got 1.5)"),
])
def test_sweep_plan_space_sizes(tmp_path, monkeypatch, capsys, key, value, expected):
    sweep = yaml.safe_load(open("examples/sweep_moe.yaml"))
    sweep["plans"][key] = value
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(sweep))
    line = refused(monkeypatch, capsys, "sweep", f, "--out", tmp_path / "o.parquet")
    assert line.endswith(expected), line


@pytest.mark.parametrize("file, key", [
    (RL, "cluster.nodes"),                  # colocated: MemoryError building the replicas
    (RL_POOLS, "cluster.pools.1.nodes"),    # a hang building the training pool's groups
    (HETERO, "cluster.pools.0.nodes"),
])
def test_nodes_are_bounded(monkeypatch, capsys, file, key):
    line = refused(monkeypatch, capsys, "simulate", file, "--set", f"{key}=1000000000000")
    assert f"{key}: Input should be less than or equal to 100000" in line


def test_rollout_replicas_are_bounded(monkeypatch, capsys):
    # 100,000 nodes x 8 GPUs of tp 1: 800,000 rollout replicas, above the serving limit
    line = refused(monkeypatch, capsys, "simulate", RL, "--set", "cluster.nodes=100000")
    assert "800,000 rollout replicas of 1 GPUs" in line and "at most 100,000" in line


def test_serving_replicas_are_bounded(monkeypatch, capsys):
    line = refused(monkeypatch, capsys, "simulate", INFERENCE, "--set", "workload.replicas=200000")
    assert "workload.replicas: Input should be less than or equal to 100000" in line


def test_rl_responses_per_step_are_bounded(monkeypatch, capsys):
    line = refused(monkeypatch, capsys, "simulate", RL, "--set", "workload.samples_per_prompt=100000")
    assert "64 x 100,000 = 6,400,000 responses per step" in line and "at most 1,000,000" in line


def test_pooled_pipeline_step_graph_is_bounded(monkeypatch, capsys):
    # 1e12 sequences over dp 32: the pooled path built the graph (MemoryError after ~40 s)
    line = refused(monkeypatch, capsys, "simulate", HETERO, "--set",
                   "workload.global_batch=1000000000000", limit_s=20)
    assert "31,250,000,000 microbatches per pipeline x 80 layers" in line
    assert "limit 400,000" in line


def test_monte_carlo_samples_beyond_the_event_budget(tmp_path, monkeypatch, capsys):
    # ~4,000 events per simulated run of the 405B run: 10,000 samples (15,000 runs with the
    # interval search's) need ~6e7 events against 3e6; it used to play 44 s, then fail
    sc = yaml.safe_load(open(RUN))
    sc["run"]["samples"] = 10_000
    f = tmp_path / "run.yaml"
    f.write_text(yaml.safe_dump(sc))
    line = refused(monkeypatch, capsys, "run", f, "--tflops-per-gpu", "400", limit_s=10)
    assert "run.samples 10,000" in line and "lower run.samples" in line


@pytest.mark.parametrize("key, value, needle", [
    ("system", "bogus", "unknown system 'bogus'; allowed:"),
    ("model", "bogus", "unknown model 'bogus'; allowed:"),
])
def test_axes_only_sweep_with_an_unknown_preset(tmp_path, monkeypatch, capsys, key, value, needle):
    # an RL sweep (axes only) used to reject its 6 rows as 'invalid scenario' and exit 0
    sweep = yaml.safe_load(open("examples/sweep_rl.yaml"))
    (sweep["base"]["cluster"] if key == "system" else sweep["base"]["workload"])[key] = value
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(sweep))
    line = refused(monkeypatch, capsys, "sweep", f, "--out", tmp_path / "o.parquet")
    assert needle in line


def test_rl_global_batch_above_the_step_responses(monkeypatch, capsys):
    # 64 x 32 = 2,048 responses; NeMo RL's trainer takes 2,048 // global_batch optimizer steps,
    # so a larger batch trains nothing (the step used to be priced as one partial batch)
    line = refused(monkeypatch, capsys, "simulate", RL, "--set", "workload.train.global_batch=4096")
    assert "train.global_batch 4,096 is more than the 2,048 responses of a step" in line
    assert "allowed: 1..2,048" in line


@pytest.mark.parametrize("suite", ["megatron-sc21", "moe"])
def test_validate_fidelity_is_a_choice(monkeypatch, capsys, suite):
    # a bad --fidelity used to skip every training row as 'not simulated' and exit 0
    code, _, err = cli(monkeypatch, capsys, "validate", suite, "--fidelity", "nope")
    assert code == 2 and "'nope' is not one of" in err and "'analytical', 'flow'" in err
    assert "Traceback" not in err


def test_torus_takes_its_dims_from_the_scenario(monkeypatch, capsys):
    # topology: torus needs dims, which the scenario schema used to refuse as an extra key
    args = ["simulate", "examples/gpt3_175b_a100.yaml", "--set", "sim.fidelity=flow",
            "--set", "cluster.network.topology=torus", "--set", "cluster.network.dims=[8, 8]"]
    line = refused(monkeypatch, capsys, *args)
    assert "dims must be 2 or 3 sizes >= 2 multiplying to 1024 GPUs, got [8, 8]" in line
    line = refused(monkeypatch, capsys, "simulate", "--default", "--set", "cluster.network.dims=[1, 8]")
    assert "cluster.network.dims.0: Input should be greater than or equal to 2 (got 1)" in line
    from sim.scenario import parse
    sc = parse({"cluster": {"nodes": 128, "network": {"topology": "torus", "dims": [8, 8, 16]}}})
    assert sc.cluster.network.model_dump(exclude_none=True)["dims"] == [8, 8, 16]


def test_sweep_range_axis_is_bounded(tmp_path, monkeypatch, capsys):
    # {start: 1, stop: 1e12} built a list of 1e12 points (MemoryError)
    sweep = yaml.safe_load(open("examples/sweep_small.yaml"))
    sweep["axes"] = {"cluster.nodes": {"start": 1, "stop": 1e12}}
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(sweep))
    line = refused(monkeypatch, capsys, "sweep", f, "--out", tmp_path / "o.parquet", limit_s=10)
    assert "axes.cluster.nodes: a range of 1,000,000,000,000 points; an axis holds at most " \
           "100,000" in line


@pytest.mark.parametrize("item, needle", [
    ("=", "--set '=': the key '' has an empty part"),                  # was "scenario: : Extra inputs"
    ("workload..tp=1", "the key 'workload..tp' has an empty part"),
    ("workload.parallel={tp: 8", "--set workload.parallel: '{tp: 8' is not a YAML value "
                                 "(expected ',' or '}', but got '<stream end>')"),   # was several lines
    ("workload.parallel.tp=!!python/object:os.system ls", "is not a YAML value (could not "
                                                          "determine a constructor"),
])
def test_set_key_and_value_are_checked(monkeypatch, capsys, item, needle):
    assert needle in refused(monkeypatch, capsys, "simulate", "--default", "--set", item)


DGX_H100 = {"gpu": "h100-sxm", "gpus_per_node": 8, "nics_per_node": 8, "nic_gbps": 400,
            "nic_hop_latency_us": 14.0, "scale_up": {"kind": "nvswitch", "domain_gpus": 8,
                                                     "gb_s_per_gpu": 450, "hop_latency_us": 3.4}}


def _inline(tmp_path, **system) -> str:
    sc = {"cluster": {"system": {**DGX_H100, **system}, "nodes": 2},
          "workload": {"model": "llama3-8b", "global_batch": 16, "parallel": {"tp": 8}}}
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(sc))
    return str(f)


@pytest.mark.parametrize("key, value", [("nics_per_node", 0), ("nic_gbps", 0)])
def test_no_scale_out_nics_across_domains(tmp_path, monkeypatch, capsys, key, value):
    # DP over 2 nodes of 8 with no NICs: a ZeroDivisionError inside the engine
    line = refused(monkeypatch, capsys, "simulate", _inline(tmp_path, **{key: value}))
    assert "traffic between scale-up domains of 8 GPUs, but the system has no scale-out NICs" in line


def test_unknown_scale_up_kind(tmp_path, monkeypatch, capsys):
    # priced as a switch by the analytical model, silently
    scale_up = {**DGX_H100["scale_up"], "kind": "bogus"}
    line = refused(monkeypatch, capsys, "simulate", _inline(tmp_path, scale_up=scale_up))
    assert "inline system: scale_up.kind: unknown scale_up.kind 'bogus'; allowed: hccs-mesh" in line


def test_sweep_pipeline_order_is_bounded(tmp_path, monkeypatch, capsys):
    # the MoE closed form plays the pipeline order unit by unit: 1e12 sequences built a list
    # of 31e9 microbatches (MemoryError)
    sweep = yaml.safe_load(open("examples/sweep_moe.yaml"))
    sweep["base"]["workload"]["global_batch"] = 10**12
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(sweep))
    line = refused(monkeypatch, capsys, "sweep", f, "--out", tmp_path / "o.parquet", limit_s=30)
    assert "pipeline order has 31,250,000,000 microbatches" in line and "limit 400,000" in line


def test_sweep_progress_stays_off_a_pipe(tmp_path, monkeypatch, capsys):
    """Progress bars only on a terminal (docs/errors.md): a redirected stderr stays clean."""
    code, out, err = cli(monkeypatch, capsys, "sweep", "examples/sweep_small.yaml",
                         "--out", tmp_path / "o.parquet")
    assert code == 0 and "feasible" in out
    assert "plan/s" not in err and "closed form:" not in err
