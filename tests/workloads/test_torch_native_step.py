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
