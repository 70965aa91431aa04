"""train.grad_accumulation_fusion of kind: rl (NeMo RL trains without Megatron's
gradient_accumulation_fusion, rl_recipes.GRAD_ACCUM_FUSION): every microbatch of the training pass adds its weight
gradients to the main gradient in a separate pass; hand calculations on a small policy (hidden
4096: its kernels outlast the host's Transformer Engine module calls, so the step is GPU-bound)."""

import pytest

from hw_models import catalog, profile
from sim import scenario
from sim.rl import pool_sizes, simulate_rl, train_scenario
from sim.setup import resolve_setup
from workloads import training
from workloads.graph import Compute, leaf_ops

H, LAYERS, FFN, VOCAB, SEQ = 4096, 2, 16384, 1024, 1024
DENSE = {"layers": LAYERS, "hidden": H, "heads": 32, "vocab": VOCAB, "seq_len": SEQ, "ffn_hidden": FFN,
         "activation": "swiglu", "norm": "rmsnorm", "bias": False, "rope": True,
         "tied_embeddings": False}
# One layer's matrices (q, k, v, o: 4 H^2; gate, up, down: 3 H FFN) and its two RMSNorm weights.
LAYER_PARAMS = 4 * H * H + 3 * H * FFN + 2 * H
TABLE = VOCAB * H              # the embedding table and the (untied) output layer, each


def make(samples: int = 64, **train) -> scenario.Scenario:
    """One DGX H100, colocated, data parallel 8: 4-token prompts + 252-token responses, four
    to a 1024-token row, so ``samples / 4`` rows and ``samples / 32`` microbatches a rank."""
    return scenario.parse({"name": "rl-gaf", "cluster": {"system": "dgx-h100", "nodes": 1},
                           "workload": {"kind": "rl", "model": DENSE, "prompts_per_step": samples // 4,
                                        "samples_per_prompt": 4, "prompt_len": 4, "response_len": 252,
                                        "train": {"global_batch": samples, "max_seq_len": SEQ,
                                                  "grad_reduce_bytes": 2, **train}}})


def accumulate_bytes(sc: scenario.Scenario, rows: int) -> float:
    system = catalog.system("dgx-h100")
    tr = resolve_setup(train_scenario(sc, system, pool_sizes(sc.workload, 8, 8), DENSE, SEQ, rows))
    g = training.build(tr.model, tr.plan, tr.options)

    return sum(o.bytes for n in g.nodes if n.rank == 0 for o in leaf_ops(n.op)
               if isinstance(o, Compute) and o.name == "accumulate_wgrad")


def test_fused_by_default_no_add():
    assert accumulate_bytes(make(), 16) == 0.0


def test_unfused_adds_six_bytes_per_parameter_per_microbatch():
    # 16 rows on 8 data-parallel ranks, micro_batch 1: 2 microbatches a rank. Per parameter
    # and microbatch: read the 2-byte main gradient and the 2-byte new one, write 2 bytes.
    params = LAYERS * LAYER_PARAMS + 2 * TABLE
    assert accumulate_bytes(make(grad_accumulation_fusion=False), 16) == pytest.approx(
        2 * 6 * params, rel=1e-3)


def test_unfused_training_pass_slower_by_the_adds():
    """The training pass's time grows by the adds at the profile's elementwise bandwidth
    (each add also pays one kernel launch), the log-prob passes not at all."""
    fused = simulate_rl(make(samples=256)).metrics
    unfused = simulate_rl(make(samples=256, grad_accumulation_fusion=False)).metrics
    assert unfused["logprob_s"] == pytest.approx(fused["logprob_s"], rel=1e-9)
    system = catalog.system("dgx-h100")
    curve = profile.load(system.default_profile).memory_curve("elementwise")
    bw = system.gpu_spec.hbm_bw * curve.bw_eff
    micro = 256 // 4 // 8                     # 64 rows on 8 ranks: 8 microbatches a rank
    params = LAYERS * LAYER_PARAMS + 2 * TABLE
    adds = LAYERS + 2                         # one add per layer, the table, the output layer
    expected = micro * (6 * params / bw + adds * curve.launch_us * 1e-6)
    assert unfused["train_s"] - fused["train_s"] == pytest.approx(expected, rel=0.05)


def test_onload_reported_apart_from_the_offload():
    """Colocated, data parallel 8, ZeRO-1: before the passes the 16-bit policy (2 bytes a
    parameter, whole on every rank) comes back at the host link's line rate and the fp32
    master weights and Adam moments (12 bytes / 8 ranks) through pageable memory, while the
    rollout engine (2 bytes, rollout tp 1) sleeps; after them the same go back and the
    engine wakes (engines.yaml vllm_sleep: fixed + bytes / (share x line rate)). The split
    check's refit takes the second only."""
    from hw_models import storage
    res = simulate_rl(make())
    params = LAYERS * LAYER_PARAMS + 2 * TABLE + H          # + the final norm
    bw = storage.host_link("h100-sxm").bw
    c = catalog.vllm_sleep()
    sleep = c["sleep"]["fixed_s"] + 2 * params / (c["sleep"]["link_share"] * bw)
    wake = c["wake"]["fixed_s"] + 2 * params / (c["wake"]["link_share"] * bw)
    moves = 2 * params / bw + 12 * params / 8 * storage.pageable_slowdown() / bw
    assert res.extra["onload_s"] == pytest.approx(moves + sleep, rel=0.02)
    assert res.metrics["offload_s"] == pytest.approx(2 * moves + sleep + wake, rel=0.02)
    assert res.extra["engine_sleep_s"] == pytest.approx(sleep, rel=0.02)
