"""Plans NVIDIA runs fit in memory; the accounting follows Megatron-Core's
(megatron/training/theoretical_memory_usage.py): weights + gradient buffer + distributed
optimizer shard of fp32 master weights and Adam states; embedding activations for the
first chunk's microbatches in flight."""

import pytest

from hw_models import catalog
from hw_models.errors import OutOfMemoryError
from sim.scenario import parse
from sim.setup import resolve_setup
from sim.simulate import simulate
from workloads import memory
from workloads.training import stage_params

GIB = 2**30


def nemotron_340b(grad_bytes=None, **sim) -> dict:
    """Nemotron-4 340B on 128 H100 (NVIDIA dgxc-benchmarking / NeMo performance tables:
    TP8 PP8 VP12 MBS1 GBS32, distributed optimizer, selective recompute, SP)."""
    w = {"model": "nemotron4-340b", "global_batch": 32, "micro_batch": 1, "precision": "bf16",
         "parallel": {"tp": 8, "pp": 8, "vpp": 12, "sequence_parallel": True, "zero": 1},
         "recompute": "selective"}
    if grad_bytes:
        w["grad_reduce_bytes"] = grad_bytes
    return {"cluster": {"system": "dgx-h100", "nodes": 16}, "workload": w, "sim": sim}


def test_hbm_capacity_is_binary():
    # 5 stacks x 16 GiB; nvidia-smi shows 81559 MiB of 81920 on an H100 SXM5 80GB
    assert catalog.gpu("h100-sxm").hbm_bytes == 80 * GIB


def test_model_states_match_megatron_core_formula():
    st = resolve_setup(parse(nemotron_340b(2, check_memory=False)))
    mem = memory.stage_memory(st.model, st.plan, 0, 2, True)
    params = stage_params(st.model, st.plan, 0)
    # distributed optimizer: bf16 weight + bf16 grad buffer + (4 + 4 + 4) / DP
    assert mem.weights + mem.grads + mem.optimizer == pytest.approx(params * (2 + 2 + 12 / 2))


def test_embedding_in_flight_microbatches_as_megatron_core():
    st = resolve_setup(parse(nemotron_340b(2, check_memory=False)))
    p, v = st.plan.pp, st.plan.vpp
    # ceil((1 + (p - 1) / (p v)) p) = ceil(8.58) = 9, not the 103 chunks of the stage
    assert memory.in_flight_microbatches(st.plan, 0) == 9 == -(-(p * v + p - 1) // v)
    assert memory.in_flight_chunks(st.plan, 0) == 2 * (p - 1) + (v - 1) * p + 1


def test_nemotron_340b_fits_with_nemo_gradient_buffer():
    # NeMo's performance recipes set grad_reduce_in_fp32 = False (a bf16 gradient buffer)
    res = simulate(parse(nemotron_340b(2)), band=False)
    assert res.memory_peak_gib <= 80


def test_fp32_gradient_buffer_does_not_fit_and_says_what_to_change():
    with pytest.raises(OutOfMemoryError, match="grad_reduce_bytes: 2"):
        simulate(parse(nemotron_340b()), band=False)


def test_no_dropout_stores_no_masks():
    st = resolve_setup(parse(nemotron_340b(2, check_memory=False)))
    m, t = st.model, 8
    sbh = m.seq_len * m.hidden
    with_masks = memory.activation_bytes_per_layer(m.model_copy(update={"dropout": True}),
                                                   1, t, True, "selective")
    without = memory.activation_bytes_per_layer(m, 1, t, True, "selective")
    assert with_masks - without == pytest.approx(2 * sbh / t)   # two 1-byte masks, SP-sharded


# H100 plans of ../shared/reference/modern/fp8_precision_training.csv that clustersim can
# express (no context parallelism): (nodes, tp, pp, vpp, global batch, seq), FP8, MBS 1,
# distributed optimizer, sequence parallel, selective recompute as NeMo's recipes.
LLAMA3_70B_H100 = {"MB-PERF LLAMA3_70B 64 GPUs": (8, 4, 8, 5, 256, 8192),
                   "MB-PERF LLAMA3_70B [SFT] 32 GPUs": (4, 4, 4, 5, 32, 4096),
                   "MLM-LLAMA-FP8 LLAMA3-70B 64 GPUs": (8, 4, 8, 5, 128, 8192)}


@pytest.mark.parametrize("name", LLAMA3_70B_H100)
def test_published_llama3_70b_fp8_plans_fit(name):
    nodes, tp, pp, vpp, gbs, seq = LLAMA3_70B_H100[name]
    sc = parse({"cluster": {"system": "dgx-h100", "nodes": nodes},
                "workload": {"model": "llama3-70b", "seq_len": seq, "global_batch": gbs,
                             "micro_batch": 1, "precision": "fp8",
                             "parallel": {"tp": tp, "pp": pp, "vpp": vpp,
                                          "sequence_parallel": True, "zero": 1},
                             "recompute": "selective"},
                "sim": {"check_memory": False}})
    st = resolve_setup(sc)
    peak = max(m.total for m in memory.memory_per_stage(st.model, st.plan, st.options.grad_bytes,
                                                       True))
    assert peak <= catalog.gpu("h100-sxm").hbm_bytes
