"""What a PyTorch-native (TorchTitan) training step pays beyond the layers, counted by hand
from the code: F.cross_entropy on fp32 logits (workloads/layers.py ``_loss_bytes``), the
multi-tensor AdamW and clip_grad_norm_ (workloads/param_sync.py), FSDP2's copy-out and
copy-in (workloads/fsdp.py), and the scenario keys that select them."""

import pytest

from sim.scenario import parse
from sim.setup import resolve_setup
from workloads.graph import Block, CommGroup, Compute
from workloads.layers import LayerContext, head_backward, head_forward
from workloads.model import resolve
from workloads.param_sync import stage_params
from workloads.training import build

MODEL = {"layers": 2, "hidden": 512, "heads": 8, "vocab": 32000, "seq_len": 1024,
         "tied_embeddings": False, "rope": True}


def _op(ops, name):
    return next(o for o in ops if getattr(o, "name", "") == name)


def test_torch_cross_entropy_passes_by_hand():
    m = resolve(MODEL)
    T, V = 2 * 1024, 32000
    ctx = LayerContext(m, 2, 1, False, "bf16", CommGroup((0,), "tp"), torch_loss=True)
    # forward: cast 2+4, log-softmax three reads and a write 4x4 = 22;
    # backward: zero-filled grad 4, softmax backward 4x4, cast back 4+2 = 26
    assert _op(head_forward(ctx), "cross_entropy").bytes == 22 * T * V
    assert _op(head_backward(ctx), "cross_entropy_bwd").bytes == 26 * T * V


def _setup(**workload):
    sc = parse({"name": "t", "cluster": {"system": "dgx-h100", "nodes": 1},
                "workload": {"kind": "training", "model": MODEL, "global_batch": 8,
                             "micro_batch": 1, "parallel": {"tp": 1, "zero": 3},
                             **workload}}, "t")
    s = resolve_setup(sc)
    return s, build(s.model, s.plan, s.options)


def _named(g, name):
    return [o for n in g.nodes if isinstance(n.op, Block) for o in n.op.ops
            if getattr(o, "name", "") == name]


def test_torch_cross_entropy_key_reaches_the_graph():
    _, g = _setup(torch_cross_entropy=True)
    assert [o.bytes for o in _named(g, "cross_entropy")] == [22 * 1024 * 32000]


@pytest.mark.parametrize("adam, per_param", [("fused", 34), ("foreach", 92)])
def test_foreach_adamw_bytes(adam, per_param):
    """foreach AdamW: mul_ 8, lerp_ 12, mul_ 8, addcmul_ 12, sqrt 8, div_ 8, add_ 8,
    addcdiv_ 16 = 80, and clip_grad_norm_'s norm 4 and scaling 8: 92 bytes a parameter
    of the rank's fp32 shard (8 ranks)."""
    s, g = _setup(adam=adam)
    opt = next(n.op for n in g.nodes if n.name == "optimizer")
    assert isinstance(opt, Compute)
    assert opt.bytes == pytest.approx(per_param * stage_params(s.model, s.plan, 0) / 8)


def test_fsdp2_copies_per_layer():
    """Each gathered layer is copied out (read and write 2 bytes a parameter) before its
    forward and, resharded after the forward, before its backward; each backward packs its
    bf16 gradients into the fp32 reduce-scatter buffer (read 2, write 4)."""
    s, g = _setup(fsdp2_copies=True)
    m = s.model
    layer = m.params_per_layer
    outs = sorted(o.bytes for o in _named(g, "fsdp2_all_gather_copy_out"))
    ins = sorted(o.bytes for o in _named(g, "fsdp2_reduce_scatter_copy_in"))
    emb = m.vocab * m.hidden                     # embedding with layer 0, output with layer 1
    per_layer = [layer + emb, layer + emb]
    assert outs == pytest.approx(sorted(4 * p for p in per_layer * 2))
    assert ins == pytest.approx(sorted(6 * p for p in per_layer))
    _, plain = _setup()
    assert not _named(plain, "fsdp2_all_gather_copy_out")


def test_fsdp2_copies_make_the_step_longer_by_their_bytes():
    from calibration.validate_modern import _simulate
    base = {"name": "t", "cluster": {"system": "dgx-h100", "nodes": 1},
            "workload": {"kind": "training", "model": MODEL, "global_batch": 8,
                         "micro_batch": 1, "parallel": {"tp": 1, "zero": 3}},
            "sim": {"fidelity": "analytical", "check_memory": False}}
    with_copies = {**base, "workload": {**base["workload"], "fsdp2_copies": True}}
    t0 = _simulate(base, False).iteration_time_s
    t1 = _simulate(with_copies, False).iteration_time_s
    assert t1 > t0


def _tp_ctx(**kw):
    m = resolve(MODEL)
    return LayerContext(m, 2, 8, True, "bf16", CommGroup(tuple(range(8)), "tp"), **kw), 2 * 1024 * 512


def test_dtensor_sequence_dim_collectives_copy_the_whole_tensor():
    """PyTorch's functional collectives on a dim-1 shard: the all-gather is followed by
    torch.cat(torch.chunk(res, tp, 0), dim=1), the reduce-scatter preceded by
    torch.cat(torch.chunk(x, tp, dim=1)): read and write the whole (tokens, hidden)."""
    from workloads.layers import tp_comm
    ctx, n = _tp_ctx(tp_seq_dim_copies=True)
    ag = tp_comm(ctx, "all_gather", "tp_ag_attn")
    rs = tp_comm(ctx, "reduce_scatter", "tp_attn_out")
    assert [type(o).__name__ for o in ag] == ["Collective", "Compute"]
    assert [type(o).__name__ for o in rs] == ["Compute", "Collective"]
    assert ag[0].bytes == 2 * n and ag[1].bytes == 2 * 2 * n and rs[0].bytes == 2 * 2 * n
    plain, _ = _tp_ctx()
    assert len(tp_comm(plain, "all_gather", "tp_ag_attn")) == 1


def test_float8_tp_gathers_move_one_byte():
    """torchao's Float8 TP: the linears' input (and output-gradient) all-gathers in FP8;
    the reduce-scatters and the logits' gather stay 16-bit."""
    from workloads.layers import tp_comm
    ctx, n = _tp_ctx(tp_gather_bytes=1, tp_seq_dim_copies=True)
    ag = tp_comm(ctx, "all_gather", "tp_ag_mlp")
    assert ag[0].bytes == n and ag[1].bytes == 2 * n
    assert tp_comm(ctx, "reduce_scatter", "tp_mlp_out")[1].bytes == 2 * n
    assert tp_comm(ctx, "all_gather", "tp_ag_logits")[0].bytes == 2 * n


@pytest.mark.parametrize("overlap, copies", [("none", True), ("async", False)])
def test_dtensor_tp_copies_only_without_tp_overlap(overlap, copies):
    sc = parse({"name": "t", "cluster": {"system": "dgx-h100", "nodes": 1},
                "workload": {"kind": "training", "model": MODEL, "global_batch": 8,
                             "micro_batch": 1, "dtensor_tp": True,
                             "parallel": {"tp": 8, "sequence_parallel": True,
                                          "tp_comm_overlap": overlap}}}, "t")
    s = resolve_setup(sc)
    g = build(s.model, s.plan, s.options)
    assert bool(_named(g, "tp_ag_attn_seq_cat")) == copies


def test_float8_tp_gather_needs_tensorwise():
    from hw_models.errors import ClusterSimError
    with pytest.raises(ClusterSimError, match="tp_all_gather applies to recipe tensorwise"):
        parse({"name": "t", "cluster": {"system": "dgx-h100", "nodes": 1},
               "workload": {"kind": "training", "model": MODEL, "precision": "fp8",
                            "fp8": {"recipe": "delayed", "tp_all_gather": True}}}, "t")


def _dp_collectives(g, name):
    return [n.op.bytes for n in g.nodes if n.rank == 0 and n.stream == "dp"
            and getattr(n.op, "name", "") == name]


def test_fsdp2_root_group_gathers_first_and_reduces_last():
    """TorchTitan's fully_shard(model) root group: embedding and output layer (2 x V h)
    gathered with the first layer, reduce-scattered after the whole backward (fp32); the
    last layer's unit holds the layer alone."""
    s, g = _setup(fsdp2_root_group=True)
    m = s.model
    layer, root = m.params_per_layer, 2 * m.vocab * m.hidden
    # forward: root + layer 0, layer 1; backward (resharded): layer 1, layer 0 + root
    assert _dp_collectives(g, "zero3_param_all_gather") == pytest.approx(
        [2 * (layer + root), 2 * layer, 2 * layer, 2 * (layer + root)])
    assert _dp_collectives(g, "zero3_grad_reduce_scatter") == pytest.approx(
        [4 * layer, 4 * (layer + root)])
    _, plain = _setup()
    emb = root / 2
    assert _dp_collectives(plain, "zero3_grad_reduce_scatter") == pytest.approx(
        [4 * (layer + emb), 4 * (layer + emb)])
