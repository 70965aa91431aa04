"""Muon's optimizer step (workloads/muon.py), by hand: the Newton-Schulz FLOPs of one matrix,
which parameters Muon steps and how Megatron-Core's layer-wise optimizer deals them over the
DP ranks, the step of a tiny model with Adam and with Muon, and the collectives around it."""

import pytest

from sim.scenario import parse
from sim.setup import resolve_setup
from workloads import moe_training, muon
from workloads.graph import Collective, Compute
from workloads.param_sync import ADAM_BYTES_PER_PARAM, optimizer_ops, stage_params
from workloads.training import build

DENSE = {"layers": 2, "hidden": 64, "heads": 4, "ffn_hidden": 256, "vocab": 100,
         "seq_len": 128, "tied_embeddings": False, "rope": True}
MOE = {"layers": 3, "hidden": 64, "heads": 4, "vocab": 100, "seq_len": 128, "ffn_hidden": 256,
       "activation": "swiglu", "tied_embeddings": False, "rope": True, "norm": "rmsnorm",
       "mtp_layers": 1, "bias": False,
       "attention": {"kind": "mla", "q_lora_rank": 32, "kv_lora_rank": 16,
                     "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16},
       "moe": {"experts": 4, "top_k": 2, "shared_experts": 1, "expert_ffn_hidden": 32,
               "dense_layers": 1, "router": "sigmoid"}}


def _setup(model, optimizer="muon", gpus=1, **parallel):
    sc = parse({"name": "t", "cluster": {"system": "dgx-h100", "nodes": 1},
                "workload": {"kind": "training", "model": model, "global_batch": 8,
                             "micro_batch": 1, "optimizer": optimizer,
                             "parallel": {"tp": 1, **parallel}}}, "t")
    return resolve_setup(sc)


def test_newton_schulz_flops_of_one_matrix():
    # (2, 3): X X^T (2,2,3) 24, A A (2,2,2) 16, B X (2,3,2) 24 = 4 m^2 n + 2 m^3 = 64 a step
    assert muon.ns_flops(2, 3, 1) == 64 == muon.ns_flops(3, 2, 1)
    # Kimi K2's expert fc1 (2 x 2048, 7168), 5 steps: 5 (4 m^2 n + 2 m^3), m = 4096
    m, n = 4096, 7168
    assert muon.ns_flops(m, n, 5) == 5 * (4 * m * m * n + 2 * m ** 3) == pytest.approx(3.09e12, rel=1e-3)
    assert muon.ns_step_gemms(7168, 2048) == [(2048, 2048, 7168), (2048, 2048, 2048), (2048, 7168, 2048)]


def test_layer_wise_deal_is_snake_order_by_size():
    # sorted: 1 (item 1), 2 (item 3), 3 (item 2), 5 (item 0) -> ranks 0, 1, 1, 0
    assert muon.deal([5, 1, 3, 2], 2) == [0, 0, 1, 1]
    assert muon.deal([1, 2, 3, 4, 5], 2) == [0, 1, 1, 0, 0]


def test_which_parameters_muon_steps():
    s = _setup(MOE)
    m = s.model
    # dense layer 0: MLA q down / up, kv down (latent + rope key) / up, output; the MLP
    assert muon.layer_matrices(m, 0, 1) == [(32, 64), (4 * 24, 32), (16 + 8, 64),
                                            (4 * (16 + 16), 16), (64, 4 * 16),
                                            (2 * 256, 64), (64, 256)]
    # MoE layer: the same attention, the router (experts, h), one shared expert (gated)
    assert muon.layer_matrices(m, 1, 1)[5:] == [(4, 64), (2 * 32, 64), (64, 32)]
    assert muon.expert_matrices(m, 1, 1) == [(2 * 32, 64), (64, 32)]
    assert muon.expert_matrices(m, 0, 1) == []
    # embedding and output layer stay Adam: the items sum to the rank's parameters
    dense, experts = muon._items(m, s.plan, 0)
    want_dense, want_experts = moe_training.stage_split(m, s.plan, 0)
    assert sum(muon._size(it) for it in dense) == pytest.approx(want_dense)
    assert sum(muon._size(it) for it in experts) == pytest.approx(want_experts)
    embed = m.vocab * m.hidden
    assert [it for it in dense if it[0] == "adam" and it[1] == embed] == [("adam", embed)] * 2
    assert all(it[0] == "muon" for it in experts)


def test_tiny_model_step_adam_vs_muon():
    """Two layers, h 64, 4 heads, ffn 256 (GELU): per layer Q, K, V, output (64, 64) and
    fc1 (256, 64), fc2 (64, 256); 5 steps of 4 m^2 n + 2 m^3."""
    adam, mu = _setup(DENSE, "adam"), _setup(DENSE)
    params = stage_params(adam.model, adam.plan, 0)     # embedding, layers, output layer
    assert params == adam.model.params - 2 * 64          # (the final norm is not counted)
    [a] = optimizer_ops(adam.model, adam.plan, 0, adam.options, params)
    assert a.bytes == params * ADAM_BYTES_PER_PARAM and a.flops == 0
    ops = optimizer_ops(mu.model, mu.plan, 0, mu.options, params)
    square = 5 * 6 * 64 ** 3                        # 7,864,320
    wide = 5 * (4 * 64 ** 2 * 256 + 2 * 64 ** 3)    # 23,592,960
    assert sum(o.flops for o in ops if o.op_class == "gemm") == 2 * (4 * square + 2 * wide)
    assert {o.dtype for o in ops if o.op_class == "gemm"} == {"bf16"}
    matrices = 2 * (4 * 64 * 64 + 2 * 64 * 256)     # 98,304
    elem = ops[-1]
    assert elem.bytes == matrices * muon.MUON_BYTES_PER_PARAM + (params - matrices) * ADAM_BYTES_PER_PARAM
    assert muon.MUON_BYTES_PER_PARAM == 94


def test_ns_steps_scale_the_gemms():
    s = _setup(DENSE)
    five = sum(o.flops for o in optimizer_ops(s.model, s.plan, 0, s.options, 0) if o.op_class == "gemm")
    opts = s.options.__class__(**{**s.options.__dict__, "muon_ns_steps": 10})
    ten = sum(o.flops for o in optimizer_ops(s.model, s.plan, 0, opts, 0) if o.op_class == "gemm")
    assert ten == 2 * five


def _colls(g):
    return sorted({n.op.name for n in g.nodes if isinstance(n.op, Collective)})


def test_layer_wise_muon_all_reduces_and_gathers():
    """ZeRO-1 Adam reduce-scatters the gradients; Muon's layer-wise optimizer all-reduces
    them (each rank steps whole matrices) and all-gathers the parameters after the step."""
    adam, mu = _setup(DENSE, "adam", zero=1), _setup(DENSE, zero=1)
    assert adam.plan.dp == 8
    assert "grad_reduce_scatter" in _colls(build(adam.model, adam.plan, adam.options))
    got = _colls(build(mu.model, mu.plan, mu.options))
    assert "grad_all_reduce" in got and "param_all_gather" in got and "grad_reduce_scatter" not in got


def test_layer_wise_share_is_the_busiest_rank():
    # 8 DP ranks over 2 x 6 matrices and the Adam lumps: a rank steps at most 2 matrices
    s = _setup(DENSE, zero=1)
    share = muon.stage_shares(s.model, s.plan, 0, 5)
    mats = [it[1] for it in share if it[0] == "muon"]
    assert 1 <= len(mats) <= 2
    full = muon.stage_shares(s.model, s.plan.__class__(**{**s.plan.__dict__, "zero": 0}), 0, 5)
    assert len([it for it in full if it[0] == "muon"]) == 12


def test_muon_step_in_the_graph():
    s = _setup(DENSE)
    g = build(s.model, s.plan, s.options)
    names = [n.op.name for n in g.nodes if n.name == "optimizer" and isinstance(n.op, Compute)]
    assert names[-1] == "muon" and set(names[:-1]) == {"muon_ns0", "muon_ns1", "muon_ns2"}


@pytest.mark.parametrize("extra", [{"parallel": {"zero": 2}},
                                   {"offload": {"optimizer": True}}])
def test_muon_refuses_what_megatron_does_not_run(extra):
    w = {"kind": "training", "model": DENSE, "global_batch": 8, "optimizer": "muon", **extra}
    with pytest.raises(Exception, match="muon"):
        parse({"name": "t", "cluster": {"system": "dgx-h100", "nodes": 1}, "workload": w}, "t")


def test_muon_state_memory_by_hand():
    """Muon's matrices keep an fp32 master and one momentum (8 bytes), Adam's parameters
    a master and two moments (12): the tiny model's optimizer states on one rank."""
    from workloads.memory import stage_memory
    s = _setup(DENSE)
    params = stage_params(s.model, s.plan, 0)
    matrices = 2 * (4 * 64 * 64 + 2 * 64 * 256)
    adam = stage_memory(s.model, s.plan, 0, 4, True)
    mu = stage_memory(s.model, s.plan, 0, 4, True, optimizer_kind="muon")
    assert adam.optimizer == params * 12
    assert mu.optimizer == pytest.approx(matrices * 8 + (params - matrices) * 12)
    assert (mu.weights, mu.grads) == (adam.weights, adam.grads)
