"""Context parallelism against hand calculations: communication volumes, the ring's
overlap, the 1/cp split of FLOPs and memory, DP x CP gradient groups (Megatron order)."""

import pytest

from hw_models.errors import InfeasiblePlanError
from workloads import memory, parallel, training
from workloads.graph import Collective, Compute, Overlap
from workloads.model import presets
from workloads.parallel import ParallelPlan

L8 = presets()["llama3-8b"].with_seq_len(32768)   # 32 heads, 8 kv heads, head_dim 128


def plan(cp=1, kind="ring", tp=1, **kw):
    return ParallelPlan(tp=tp, pp=1, dp=1, micro_batch=1, global_batch=4, cp=cp, cp_kind=kind,
                        sequence_parallel=tp > 1, **kw)


def layer_ops(p, backward=False):
    g = training.build(L8, p, training.TrainingOptions())
    node = next(n for n in g.nodes if n.name.startswith("B0" if backward else "F0"))
    return list(node.op.ops), g


def flat(ops):
    out = []
    for op in ops:
        out += list(op.main) + list(op.hidden) if isinstance(op, Overlap) else [op]
    return out


def test_overlap_time_by_hand():
    """Ring of n steps: the first block alone, then each step the longer of block and transfer."""
    o = Overlap((), (), steps=3)
    assert o.time(4.0, 3.0) == pytest.approx(1 + 3 * max(1, 1))
    assert o.time(1.0, 6.0) == pytest.approx(0.25 + 3 * 2)      # transfer-bound: 6.25
    assert o.time(8.0, 0.0) == pytest.approx(8.0)


@pytest.mark.parametrize("cp", [2, 4, 8])
def test_ring_kv_volume_and_steps(cp):
    ops, _ = layer_ops(plan(cp))
    rings = [o for o in ops if isinstance(o, Overlap) and o.name == "cp_ring_attention"]
    assert len(rings) == L8.layers
    ag = rings[0].hidden[0]
    # K and V of the whole sequence, 8 kv heads x 128, 2 bytes: the all-gather buffer.
    assert ag.kind == "all_gather" and ag.bytes == 2 * 2 * 32768 * 8 * 128
    assert ag.group.size == cp and rings[0].steps == cp - 1


@pytest.mark.parametrize("backward", [False, True])
def test_ring_kernels_follow_te_load_balancing(backward):
    """Transformer Engine's p2p ring, cp = 4 on 32,768 tokens: 8,192 local tokens in two
    chunks of 4,096. Step 0 is the causal kernel of the local tokens, 4 x 32 heads x
    8192^2 x 128 / 2 FLOPs (x 2.5 backward); the 3 other steps run without a mask on the
    same work each, the slowest shape (all local queries on the first 4,096-token half
    of the block received) pacing the ring."""
    ops, _ = layer_ops(plan(4), backward=backward)
    first, rest = next(o for o in ops if isinstance(o, Overlap)).main
    causal = 4 * 32 * 8192 ** 2 * 128 / 2 * (2.5 if backward else 1.0)
    assert first.causal and first.flops == causal and first.shape == (32, 8192, 8192, 128)
    assert not rest.causal and rest.flops == 3 * causal and rest.shape == (32, 8192, 4096, 128)


def test_ring_output_corrections_and_gradient_sums_by_hand():
    """cp = 4, 8,192 local tokens, 32 heads x 128 (Q, O: q elements), 8 KV heads (K,V:
    q / 2), 2-byte elements. Forward: the first partial output scaled in (2 B read +
    write), 3 later ones added (6 B). Backward: dQ, dK,dV copied at step 0 (4 B each);
    at each of 3 later steps the slower of rank 0 (half dQ, all dK,dV) and the last rank
    (all dQ, half dK,dV) adds in: 6 B x max(q/2 + q/2, q + q/4)."""
    q = 8192 * 32 * 128
    fwd = [o for o in layer_ops(plan(4))[0] if getattr(o, "name", "") == "cp_out_correction"]
    bwd = [o for o in layer_ops(plan(4), backward=True)[0]
           if getattr(o, "name", "") == "cp_grad_accumulate"]
    assert len(fwd) == len(bwd) == L8.layers
    assert fwd[0].bytes == (4 + 3 * 6) * q
    assert bwd[0].bytes == pytest.approx(4 * 1.5 * q + 3 * 6 * 1.25 * q)


def test_hybrid_ring_blocks_hold_the_ulysses_group_tokens():
    """Ulysses over 2 then a ring of 2: 16 heads on 16,384 tokens per ring block, one
    causal step and one unmasked step on 8,192 keys, together 1/4 of the layer's work."""
    ops, _ = layer_ops(plan(4, "hybrid", ulysses_size=2))
    first, rest = next(o for o in ops if isinstance(o, Overlap)).main
    assert first.shape == (16, 16384, 16384, 128) and rest.shape == (16, 16384, 8192, 128)
    assert first.flops == rest.flops == 4 * 32 * 32768 ** 2 * 128 / 2 / 4 / 2


def test_ring_backward_moves_kv_and_its_gradient():
    ops, _ = layer_ops(plan(4), backward=True)
    ring = next(o for o in ops if isinstance(o, Overlap))
    assert [h.kind for h in ring.hidden] == ["all_gather", "reduce_scatter"]


def test_ulysses_all_to_all_bytes():
    ops = flat(layer_ops(plan(4, "ulysses"))[0])
    a2a = [o for o in ops if isinstance(o, Collective) and o.kind == "all_to_all"]
    local = 32768 // 4
    qkv = 2 * local * (32 + 2 * 8) * 128
    out = 2 * local * 32 * 128
    assert [o.bytes for o in a2a[:2]] == [qkv, out]


@pytest.mark.parametrize("kind", ["ring", "allgather", "ulysses", "hybrid"])
@pytest.mark.parametrize("cp", [2, 4])
def test_flops_split_evenly(kind, cp):
    """Every CP rank does 1/cp of the layer's GEMM and (load-balanced) attention FLOPs."""
    one = flat(layer_ops(plan(1))[0])
    many = flat(layer_ops(plan(cp, kind, ulysses_size=2 if kind == "hybrid" else None))[0])

    def flops(ops, cls):
        return sum(o.flops for o in ops if isinstance(o, Compute) and o.op_class == cls)
    assert flops(many, "gemm") * cp == pytest.approx(flops(one, "gemm"))
    assert flops(many, "attention") * cp == pytest.approx(flops(one, "attention"))


@pytest.mark.parametrize("cp", [2, 4, 8])
def test_activation_memory_shrinks_as_one_over_cp(cp):
    base = memory.stage_memory(L8, plan(1), 0, 4, flash=True).activations
    split = memory.stage_memory(L8, plan(cp), 0, 4, flash=True).activations
    assert split == pytest.approx(base / cp)


def test_cp_group_in_megatron_rank_order_and_dp_cp_gradients():
    p = ParallelPlan(tp=8, pp=2, dp=2, micro_batch=1, global_batch=8, cp=2, sequence_parallel=True)
    assert p.cp_group(0) == (0, 8)                 # next to the TP group
    assert p.dp_group(0) == (0, 8, 16, 24)         # gradients reduced over DP x CP
    assert p.rank(0, 0, 1) == 32                   # pp outermost
    g = training.build(L8, p, training.TrainingOptions())
    grads = [n.op for n in g.nodes if isinstance(n.op, Collective) and n.op.name.startswith("grad_")]
    assert grads and all(op.group.size == 4 for op in grads)


def test_p2p_activation_is_the_local_sequence():
    p = ParallelPlan(tp=1, pp=2, dp=1, micro_batch=1, global_batch=2, cp=4)
    g = training.build(L8, p, training.TrainingOptions())
    sends = [n.op for n in g.nodes if n.name.startswith("send_F")]
    assert sends[0].bytes == 2 * 32768 // 4 * 4096


@pytest.mark.parametrize("kw,msg", [
    (dict(cp=3), "multiple of 2\\*cp"),
    (dict(cp=64, kind="ulysses", tp=1), "must divide the 32 attention heads"),
])
def test_bad_cp_names_the_problem(kw, msg):
    with pytest.raises(InfeasiblePlanError, match=msg):
        parallel.validate(plan(**kw), L8, kw["cp"])
