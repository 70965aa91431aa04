"""Megatron-Core's fine-grained activation offloading (offload.modules) and parked optimizer
states (offload.optimizer_states), by hand: the bytes each named module's stored input
sends to the host, the memory they free, the copies in the graph, and the refusals."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hw_models.errors import InfeasiblePlanError
from sim.scenario import parse
from sim.setup import resolve_setup
from sim.sweep import plans
from workloads import memory, offload_modules, training
from workloads.model import presets
from workloads.offload import OffloadOptions
from workloads.parallel import ParallelPlan

MOE = presets()["qwen3-30b-a3b"].with_seq_len(1024)   # hidden 2048, 32 heads, 4 KV heads of 128,
#                                                       128 experts of 768, top 8, every layer MoE
SB = 1024                                               # tokens of one microbatch


def plan(**kw) -> ParallelPlan:
    base = {"tp": 1, "pp": 1, "dp": 8, "ep": 8, "micro_batch": 1, "global_batch": 16,
            "recompute": "selective"}
    return ParallelPlan(**(base | kw))


def test_module_bytes_by_hand():
    p = plan()
    received = SB * 8                                   # top 8, balanced: 8 copies of each token
    assert offload_modules.module_bytes(MOE, 0, p, 1.0, ("attn_norm",)) == 2 * SB * 2048
    assert offload_modules.module_bytes(MOE, 0, p, 1.0, ("core_attn",)) == 2 * SB * (32 + 8) * 128
    assert offload_modules.module_bytes(MOE, 0, p, 1.0, ("attn_proj",)) == 2 * SB * 32 * 128
    assert offload_modules.module_bytes(MOE, 0, p, 1.0, ("expert_fc1",)) == 2 * received * 2048
    # the fc1 output of a gated expert: 2 x 768 channels
    assert offload_modules.module_bytes(MOE, 0, p, 1.0, ("moe_act",)) == 2 * received * 2 * 768
    # a recomputed input is not stored: nothing to move
    norms = plan(recompute=("layernorm",))
    assert offload_modules.module_bytes(MOE, 0, norms, 1.0, ("qkv_linear",)) == 0.0
    assert offload_modules.module_bytes(MOE, 0, p, 1.0, ("qkv_linear",)) == 2 * SB * 2048
    mla = presets()["deepseek-v3"].with_seq_len(1024)   # 128 heads, qk 192, v 128
    up = plan(recompute=("mla_up_proj",), ep=8)
    assert offload_modules.module_bytes(mla, 5, plan(), 1.0, ("core_attn",)) == \
        2 * SB * 128 * (2 * 192 + 128)
    assert offload_modules.module_bytes(mla, 5, up, 1.0, ("core_attn",)) == 0.0


def test_dense_modules_are_a_fraction_of_every_layer():
    # Llama 3 8B, selective, flash, no dropout, one TP rank: a layer stores, in units of
    # s x b, 4h (norm inputs) + 2h (QKV input) + 2h x 1.5 (Q, K, V with 8 of 32 KV heads)
    # + 2h (projection input) + 2h (MLP input) + 2 x 28,672 (fc1 output) + 2 x 14,336
    # (activation output) = 13 x 4,096 + 86,016 = 139,264; core_attn is 12,288 of them
    sc = parse({"name": "t", "cluster": {"system": "dgx-h100", "nodes": 1},
                "workload": {"kind": "training", "model": "llama3-8b", "seq_len": 4096,
                             "global_batch": 8, "micro_batch": 1,
                             "parallel": {"tp": 1, "pp": 1}, "recompute": "selective",
                             "offload": {"modules": ["core_attn"]}}})
    off = resolve_setup(sc).options.offload
    assert off.modules == () and off.activations == pytest.approx(12288 / 139264)


def test_memory_keeps_what_each_layer_does_not_send():
    p = plan()
    off = OffloadOptions(modules=("expert_fc1", "moe_act"))
    sent = offload_modules.module_bytes(MOE, 0, p, 1.0, off.modules)
    base = memory.stage_memory(MOE, p, 0, 4, True).activations
    with_off = memory.stage_memory(MOE, p, 0, 4, True, offload=off).activations
    # one microbatch in flight (1F1B on one stage) of 48 layers: 47 layers' inputs leave,
    # the layer at work keeps its own
    assert base - with_off == pytest.approx(47 * sent)
    # a fraction of a MoE model's activations now frees memory too (it did not before)
    half = memory.stage_memory(MOE, p, 0, 4, True, offload=OffloadOptions(activations=0.5))
    assert half.activations < base


def test_copies_in_the_graph_carry_the_chunk_bytes():
    p = plan()
    off = OffloadOptions(modules=("expert_fc1",))
    g = training.build(MOE, p, training.TrainingOptions(offload=off))
    down = [n for n in g.nodes if n.rank == 0 and n.stream == "offload_d2h"]
    up = [n for n in g.nodes if n.rank == 0 and n.stream == "offload_h2d"]
    per_mb = 48 * 2 * SB * 8 * 2048
    assert len(down) == len(up) == 2                    # 2 microbatches
    assert [n.op.bytes for n in down + up] == pytest.approx([per_mb] * 4)


def test_optimizer_states_parked_between_steps():
    p = plan()
    off = OffloadOptions(optimizer_states=True)
    g = training.build(MOE, p, training.TrainingOptions(offload=off))
    reload = [n for n in g.nodes if n.rank == 0 and n.stream == "offload_h2d"]
    adam = [n for n in g.nodes if n.rank == 0 and n.name == "optimizer"]
    assert len(reload) == 1 and reload[0].id in adam[0].deps
    plain = memory.stage_memory(MOE, p, 0, 4, True)
    parked = memory.stage_memory(MOE, p, 0, 4, True, offload=off)
    # on the GPU only for the step, when the activations are gone: the larger of the two
    assert parked.total == pytest.approx(plain.total - min(plain.optimizer, plain.activations))
    assert reload[0].op.bytes == pytest.approx(plain.optimizer)   # 12 bytes a shard parameter


@pytest.mark.parametrize("workload, message", [
    ({"recompute": "full", "offload": {"modules": ["core_attn"]}}, "full recompute"),
    ({"model": "llama3-8b", "parallel": {"tp": 1, "pp": 1}, "offload": {"modules": ["expert_fc1"]}},
     "apply to MoE layers"),
    ({"offload": {"modules": ["core_attn"], "activations": 0.5}}, "give one"),
    ({"offload": {"optimizer": True, "optimizer_states": True}}, "exclude each other"),
    ({"adam_moments": "bf16", "adam": "foreach"}, "FusedAdam"),
    ({"adam_moments": "bf16", "optimizer": "muon"}, "not muon"),
])
def test_bad_offloads_get_one_line(workload, message, tmp_path):
    import subprocess
    import sys

    import yaml
    w = {"kind": "training", "model": "qwen3-30b-a3b", "global_batch": 16, "micro_batch": 1,
         "parallel": {"tp": 1, "pp": 1, "ep": 8}, "recompute": "selective"} | workload
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "cluster": {"system": "dgx-h100", "nodes": 1},
                                    "workload": w}))
    out = subprocess.run([sys.executable, "-m", "sim.cli.main", "simulate", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_sweeps_refuse_what_they_do_not_estimate():
    with pytest.raises(InfeasiblePlanError, match="offload.modules"):
        plans.check_offload(OffloadOptions(modules=("expert_fc1",)), plan())
    with pytest.raises(InfeasiblePlanError, match="optimizer_states"):
        plans.check_offload(OffloadOptions(optimizer_states=True), plan())
    plans.check_offload(replace(OffloadOptions(), activations=0.5), plan())
    # under ZeRO-3 the estimator plays the graph builder's own nodes, copies included
    # (equal to the DES: tests/workloads/test_moe_zero3.py)
    plans.check_offload(OffloadOptions(modules=("expert_fc1",), optimizer_states=True),
                        plan(zero=3))


def test_bf16_adam_moments_by_hand():
    # Megatron-Core's precision-aware optimizer: fp32 master weight + two bf16 moments,
    # 8 bytes a parameter; the fused step reads master, grad, m, v (4 + 4 + 2 + 2) and
    # writes master, m, v and the 16-bit copy (4 + 2 + 2 + 2), plus the grad-norm read (4)
    from workloads.param_sync import adam_bytes
    p = plan()
    fp32 = memory.stage_memory(MOE, p, 0, 4, True)
    bf16 = memory.stage_memory(MOE, p, 0, 4, True, moment_bytes=2)
    assert bf16.optimizer == pytest.approx(fp32.optimizer * 8 / 12)
    assert adam_bytes(training.TrainingOptions(adam_moment_bytes=2)) == 12 + 10 + 4
    assert adam_bytes(training.TrainingOptions()) == 34
    off = OffloadOptions(optimizer_states=True)
    g = training.build(MOE, p, training.TrainingOptions(offload=off, adam_moment_bytes=2))
    reload = [n for n in g.nodes if n.rank == 0 and n.stream == "offload_h2d"]
    assert reload[0].op.bytes == pytest.approx(bf16.optimizer)


def test_gb200_recipe_example_runs_with_its_offloads():
    """examples/deepseek_v3_gb200_offload.yaml: Megatron-LM's DeepSeek-V3 GB200 recipe with
    its offloads runs within the GPU's memory (the memory check on), and its copies are on
    the host link (the breakdown's memory share)."""
    from pathlib import Path

    from sim.scenario import load
    from sim.simulate import simulate
    res = simulate(load(Path(__file__).resolve().parents[2] / "examples" /
                        "deepseek_v3_gb200_offload.yaml"), band=False)
    assert res.memory_peak_gib < 186 and res.breakdown["memory"] > 0


def test_moe_optimizer_on_the_host_steps_the_ranks_adam_shard():
    """offload.optimizer on a MoE model: the gradient shard goes down, the CPU steps it and
    the parameters come up, over the rank's Adam shard (its experts' over expert-DP 1 of
    ep 8 on 8 GPUs, the replicated part over dp 8); the GPU runs no Adam step (it did,
    while memory counted the states on the host)."""
    from workloads.param_sync import adam_shard, stage_params
    p = plan()
    off = OffloadOptions(optimizer=True, host_adam_bw=1e11)
    g = training.build(MOE, p, training.TrainingOptions(offload=off))
    names = [n.name for n in g.nodes if n.rank == 0]
    assert "cpu_adam" in names and "optimizer" not in names
    down = next(n for n in g.nodes if n.rank == 0 and n.name == "optimizer_grads_to_host")
    shard = adam_shard(MOE, p, 0, stage_params(MOE, p, 0))
    assert down.op.bytes == pytest.approx(shard * 4)
