"""MoE parameters of every chunk a rank holds (DualPipe, DualPipeV, zb-v: two chunks per
rank; interleaved: vpp), counted by hand from the layer split, and what they size: the
optimizer shard, the replicated and expert gradient buckets, the parameter all-gathers
and the model-state memory.

Tiny MoE, 4 layers, hidden 1024 (8 heads of 128, no biases, RMSNorm, rope), 4 SwiGLU
experts of 4096, vocab 1024, untied output layer; tp 1, pp 2, dp 4, ep 2 (expert-DP 2),
ZeRO-1. Per layer and rank:
  replicated R = attention 4 x 1024^2 + 2 norms x 1024 + router 1024 x 4 = 4,200,448
  experts    E = 2 local experts x 3 x 1024 x 4096                      = 25,165,824
  embedding V = output layer = 1024 x 1024                             =  1,048,576
Placement (workloads/pipeline.py): DualPipe rank r holds stage r (chunk 0) and stage
p-1-r (chunk 1), so both ranks hold all 4 layers, the embedding and the output layer;
DualPipeV / zb-v rank 0 holds layers 0 and 3 (embedding and output layer), rank 1 layers
1 and 2; interleaved vpp 2 rank 0 holds layers 0 and 2 (embedding), rank 1 layers 1 and 3
(output layer)."""

from __future__ import annotations

import pytest

from sim.scenario import parse
from sim.setup import resolve_setup
from workloads import moe_memory, moe_training, training
from workloads.graph import Collective, Compute
from workloads.memory import stage_memory
from workloads.param_sync import ADAM_BYTES_PER_PARAM, stage_params

R, E, V = 4_200_448, 25_165_824, 1_048_576
MODEL = {"layers": 4, "hidden": 1024, "heads": 8, "vocab": 1024, "seq_len": 1024,
         "activation": "swiglu", "norm": "rmsnorm", "bias": False, "rope": True,
         "tied_embeddings": False, "moe": {"experts": 4, "top_k": 1, "expert_ffn_hidden": 4096}}

# schedule, vpp -> per rank (replicated, expert) parameters
CASES = {
    ("dualpipe", 1): [(4 * R + 2 * V, 4 * E), (4 * R + 2 * V, 4 * E)],
    ("dualpipev", 1): [(2 * R + 2 * V, 2 * E), (2 * R, 2 * E)],
    ("zb-v", 1): [(2 * R + 2 * V, 2 * E), (2 * R, 2 * E)],
    ("1f1b", 2): [(2 * R + V, 2 * E), (2 * R + V, 2 * E)],
    ("1f1b", 1): [(2 * R + V, 2 * E), (2 * R + V, 2 * E)],
}


def setup(schedule: str, vpp: int):
    sc = parse({"cluster": {"system": "dgx-h100", "nodes": 1},
                "workload": {"kind": "training", "model": MODEL, "global_batch": 16,
                             "micro_batch": 1,
                             "parallel": {"tp": 1, "pp": 2, "vpp": vpp, "ep": 2, "zero": 1,
                                          "schedule": schedule},
                             "overlap_grad_reduce": False},
                "sim": {"fidelity": "analytical", "check_memory": False}})
    return resolve_setup(sc)


@pytest.mark.parametrize(("schedule", "vpp"), list(CASES))
def test_rank_parameters_by_hand(schedule, vpp):
    st = setup(schedule, vpp)
    for s, (dense, experts) in enumerate(CASES[(schedule, vpp)]):
        assert moe_training.stage_split(st.model, st.plan, s) == (dense, experts)
        assert stage_params(st.model, st.plan, s) == dense
        grads = [e for _, g in moe_training.expert_grads(st.model, st.plan, s) for e in g]
        assert sum(grads) == experts and len(grads) == 2 * (2 if schedule == "dualpipe" else 1)


@pytest.mark.parametrize(("schedule", "vpp"), list(CASES))
def test_model_state_memory_by_hand(schedule, vpp):
    """16-bit weights, fp32 gradients, 12 B of master weights and Adam moments sharded
    over dp 4 (replicated part) and expert-DP 2 (experts)."""
    st = setup(schedule, vpp)
    for s, (dense, experts) in enumerate(CASES[(schedule, vpp)]):
        m = stage_memory(st.model, st.plan, s, grad_bytes=4, flash=True)
        assert m.weights == pytest.approx(2 * (dense + experts), rel=1e-12)
        assert m.grads == pytest.approx(4 * (dense + experts), rel=1e-12)
        assert m.optimizer == pytest.approx(12 * dense / 4 + 12 * experts / 2, rel=1e-12)


def _bytes(ops, name: str) -> float:
    return sum(o.bytes for o in ops if isinstance(o, Collective) and o.name == name)


@pytest.mark.parametrize(("schedule", "vpp"), list(CASES))
def test_graph_step_covers_every_chunk(schedule, vpp):
    """The step's collectives and optimizer on each rank: replicated gradients
    reduce-scattered over dp (4 B each) and gathered back (2 B), expert gradients
    reduce-scattered over expert-DP and gathered back, Adam over the rank's shard."""
    st = setup(schedule, vpp)
    g = training.build(st.model, st.plan, st.options)
    for s, (dense, experts) in enumerate(CASES[(schedule, vpp)]):
        rank = st.plan.rank(0, 0, s)
        ops = [n.op for n in g.nodes if n.rank == rank]
        assert _bytes(ops, "grad_reduce_scatter") == pytest.approx(4 * dense, rel=1e-12)
        assert _bytes(ops, "param_all_gather") == pytest.approx(2 * dense, rel=1e-12)
        assert _bytes(ops, "expert_grad_reduce_scatter") == pytest.approx(4 * experts, rel=1e-12)
        assert _bytes(ops, "expert_param_all_gather") == pytest.approx(2 * experts, rel=1e-12)
        (adam,) = [o for o in ops if isinstance(o, Compute) and o.name == "adam"]
        shard = dense / 4 + experts / 2
        assert adam.bytes == pytest.approx(shard * ADAM_BYTES_PER_PARAM, rel=1e-12)


@pytest.mark.parametrize(("schedule", "vpp"), [("dualpipev", 1), ("zb-v", 1)])
def test_mtp_activations_on_the_rank_with_the_head(schedule, vpp):
    """V-shaped pipelines end on rank 0: the MTP module's activations are stored there."""
    st = setup(schedule, vpp)
    mtp = st.model.model_copy(update={"mtp_layers": 1})
    per = moe_memory.layer_activation_bytes(mtp, mtp.layers - 1, st.plan, 1.0)
    with_mtp = [moe_memory.stage_activations(mtp, st.plan, s, 1.0, 3) for s in range(2)]
    without = [moe_memory.stage_activations(st.model, st.plan, s, 1.0, 3) for s in range(2)]
    assert with_mtp[0] - without[0] == pytest.approx(3 * per, rel=1e-12)
    assert with_mtp[1] == pytest.approx(without[1], rel=1e-12)
