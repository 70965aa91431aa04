"""PyTorch's context_parallel as TorchTitan runs it (all-gather rotater, load balancing,
K,V expanded to every query head by the Llama model's repeat_kv), checked by hand."""

import pytest

from workloads import training
from workloads.graph import Collective, Compute, Overlap
from workloads.model import presets
from workloads.parallel import ParallelPlan

L8 = presets()["llama3-8b"].with_seq_len(32768)   # 32 heads, 8 kv heads, head_dim 128
L2 = presets()["llama2-7b"].with_seq_len(32768)   # 32 heads, 32 kv heads (no GQA)


def ops(model, cp, repeat_kv=False, backward=False):
    p = ParallelPlan(tp=1, pp=1, dp=1, micro_batch=1, global_batch=4, cp=cp, cp_kind="allgather")
    g = training.build(model, p, training.TrainingOptions(repeat_kv=repeat_kv))
    node = next(n for n in g.nodes if n.name.startswith("B0" if backward else "F0"))
    return list(node.op.ops)


def named(seq, name):
    return [o for o in seq if getattr(o, "name", "") == name]


def test_concurrent_overlap_is_the_longer_of_the_two():
    o = Overlap((), (), 1, concurrent=True)
    assert o.time(4.0, 3.0) == 4.0 and o.time(1.0, 6.0) == 6.0


def test_allgather_forward_by_hand():
    """cp = 4 on 32,768 tokens: 8,192 local tokens (2 chunks of 4,096). Step 0 is the
    causal kernel of the local tokens, 4 x 32 x 8192^2 x 128 / 2 FLOPs, beside the K,V
    all-gather of the whole sequence (2 x 2 B x 32768 x 8 kv heads x 128); the 3 other
    steps are non-causal kernels of the same work each on 4,096 keys (or queries)."""
    fwd = ops(L8, 4)
    first = named(fwd, "cp_kv_all_gather_overlap")
    assert len(first) == L8.layers and first[0].concurrent
    step0 = first[0].main[0]
    assert step0.causal and step0.flops == 4 * 32 * 8192 ** 2 * 128 / 2
    gather = first[0].hidden[0]
    assert gather.kind == "all_gather" and gather.bytes == 2 * 2 * 32768 * 8 * 128
    assert gather.group.size == 4
    rest = named(fwd, "flash_attn_fwd_cp_blocks")[0]
    assert not rest.causal and rest.flops == 3 * step0.flops and rest.shape[2] == 4096


def test_allgather_backward_sends_fp32_kv_gradients_each_step():
    """Backward: the all-gather again beside step 0, then dK,dV of the local tokens in fp32
    (2 x 4 B x 8192 x 8 x 128 = 16.8 MB) sent to the next rank after every step: the 3
    sends after steps 0-2 beside steps 1-3 (a reduce-scatter volume of the whole fp32
    dK,dV), the last waited for after the loop."""
    bwd = ops(L8, 4, backward=True)
    assert named(bwd, "cp_kv_all_gather_overlap")
    ring = named(bwd, "cp_dkv_ring_overlap")[0]
    assert ring.concurrent and ring.main[0].flops == 3 * 2.5 * 4 * 32 * 8192 ** 2 * 128 / 2
    local = 2 * 4 * 8192 * 8 * 128
    assert ring.hidden[0].kind == "reduce_scatter" and ring.hidden[0].bytes == 4 * local
    last = named(bwd, "cp_dkv_last")[0]
    # a reduce-scatter of X over 4 ranks moves 3/4 X per rank: X = 4/3 local moves one block
    assert last.bytes * 3 / 4 == pytest.approx(local)


def test_repeat_kv_expands_what_context_parallelism_moves():
    """TorchTitan's Llama repeats the 8 KV heads to 32 before SDPA: the all-gather carries
    32 heads (4x), the merge passes count 32-head K,V elements, and a copy per layer reads
    the 8-head K,V and writes the 32-head one: 2 x 2 B x 8192 x 128 x (32 + 8)."""
    plain, rep = ops(L8, 4), ops(L8, 4, repeat_kv=True)
    g0 = named(plain, "cp_kv_all_gather_overlap")[0].hidden[0]
    g1 = named(rep, "cp_kv_all_gather_overlap")[0].hidden[0]
    assert g1.bytes == 4 * g0.bytes
    q, kv = 8192 * 32 * 128, 2 * 8192 * 32 * 128
    assert named(rep, "cp_merge")[0].bytes == 3 * (42 * q + 4 * kv)
    copy = named(rep, "repeat_kv")
    assert len(copy) == L8.layers and copy[0].bytes == 2 * 2 * 8192 * 128 * (32 + 8)
    assert not named(plain, "repeat_kv")
    back = named(ops(L8, 4, repeat_kv=True, backward=True), "repeat_kv_bwd")
    assert back and back[0].bytes == copy[0].bytes


def test_repeat_kv_changes_nothing_without_gqa():
    a, b = ops(L2, 2), ops(L2, 2, repeat_kv=True)
    assert not named(b, "repeat_kv")
    assert [getattr(o, "bytes", None) for o in a if isinstance(o, Collective | Compute)] == \
        [getattr(o, "bytes", None) for o in b if isinstance(o, Collective | Compute)]


def _tp_ops(mode, backward=False, model=L8):
    p = ParallelPlan(tp=4, pp=1, dp=1, micro_batch=1, global_batch=1, sequence_parallel=True,
                     tp_comm_overlap=mode)
    g = training.build(model.with_seq_len(4096), p, training.TrainingOptions())
    node = next(n for n in g.nodes if n.name.startswith("B0" if backward else "F0"))
    return list(node.op.ops)


def test_async_tp_splits_the_gemm_per_rank_and_sums_the_partials():
    """PyTorch's fused_all_gather_matmul / fused_matmul_reduce_scatter at TP 4 on 4,096
    tokens: the QKV GEMM runs as 4 kernels of 1,024 tokens; after the attention
    projection's reduce-scatter a kernel reads the 4 stacked partials (the whole 4096 x
    4096 bf16 output) and writes the rank's quarter: 2 B x 4096 x 4096 x (1 + 1/4)."""
    fwd = _tp_ops("async")
    qkv = next(o for o in fwd if isinstance(o, Overlap) and o.main[0].name == "qkv")
    ring = next(o for o in _tp_ops("ring") if isinstance(o, Overlap) and o.main[0].name == "qkv")
    assert len(qkv.main) == 4 and len(ring.main) == 1
    assert qkv.main[0].flops * 4 == pytest.approx(ring.main[0].flops)
    assert qkv.main[0].shape == (1024, *ring.main[0].shape[1:])
    i = next(k for k, o in enumerate(fwd) if isinstance(o, Overlap) and o.main[0].name == "attn_proj")
    assert fwd[i + 1].name == "attn_proj_rs_partials_sum"
    assert fwd[i + 1].bytes == pytest.approx(2 * 4096 * 4096 * 1.25)
    assert not any("rs_partials" in getattr(o, "name", "") for o in _tp_ops("ring"))


def test_async_tp_fuses_the_backward_reduce_scatter_with_the_input_gradient():
    """reduce_scatter(dY @ W^T): the input-gradient GEMM is the one pipelined with the
    reduce-scatter; the weight gradient runs after the partials are summed (a GELU MLP:
    its up projection is one linear)."""
    bwd = _tp_ops("async", backward=True, model=presets()["megatron-1.7b"])
    i = next(k for k, o in enumerate(bwd) if isinstance(o, Overlap) and o.main[0].name == "mlp_up_dgrad")
    assert bwd[i].hidden[0].kind == "reduce_scatter"
    assert [bwd[i + 1].name, bwd[i + 2].name] == ["mlp_up_dgrad_rs_partials_sum", "mlp_up_wgrad"]


def test_torchtitan_op_selective_recompute_by_hand():
    """Per-op selective AC on Llama 3 8B, TP 1, 4,096 tokens: the backward recomputes the
    K projection (4096 x 1024 x 4096 x 2 FLOPs), wo (4096 x 4096 x 4096 x 2: the residual
    sum the MLP norm needs is rebuilt from wo's output, which the policy does not save)
    and the w3 half of the MLP up projection (4096 x 14336 x 4096 x 2), the two norms,
    RoPE of K, the residual add and the SwiGLU; not Q, V, w1, w2 nor attention."""
    from workloads.graph import CommGroup
    from workloads.layers import LayerContext, layer_recompute
    ctx = LayerContext(L8.with_seq_len(4096), 1, 1, False, "bf16", CommGroup((0,), "tp"))
    ops = layer_recompute(ctx, "selective_op")
    gemms = [o for o in ops if isinstance(o, Compute) and o.op_class == "gemm"]
    assert [g.flops for g in gemms] == [2 * 4096 * 1024 * 4096, 2 * 4096 * 4096 * 4096,
                                        2 * 4096 * 14336 * 4096]
    assert not any(isinstance(o, Compute) and o.op_class == "attention" for o in ops)
    names = [o.name for o in ops if isinstance(o, Compute) and o.op_class != "gemm"]
    assert names == ["input_norm", "rope", "residual_add", "post_attn_norm", "activation"]
    fwd = sum(o.flops for o in ops if isinstance(o, Compute) and o.op_class == "gemm")
    # K 4.2M + wo 16.8M + w3 58.7M of the layer's 218.1M weights
    assert fwd / (2 * 4096 * 218_103_808) == pytest.approx(79_691_776 / 218_103_808)


def test_torchtitan_op_selective_recompute_with_tp_keeps_wo():
    """With TP 8 and sequence parallelism the reduce-scatter after wo is saved (it is in
    the policy's save list), so the residual sum is rebuilt from it: only K and w3 are
    recomputed, each on the rank's 1/8 of the columns."""
    from workloads.graph import CommGroup
    from workloads.layers import LayerContext, layer_recompute
    ctx = LayerContext(L8.with_seq_len(4096), 1, 8, True, "bf16", CommGroup(tuple(range(8)), "tp"))
    gemms = [o for o in layer_recompute(ctx, "selective_op")
             if isinstance(o, Compute) and o.op_class == "gemm"]
    assert [g.flops for g in gemms] == [2 * 4096 * 128 * 4096, 2 * 4096 * 1792 * 4096]


def compiled_ops(cp, backward=False):
    p = ParallelPlan(tp=1, pp=1, dp=1, micro_batch=1, global_batch=cp, cp=cp, cp_kind="allgather",
                     cp_compiled=True)
    g = training.build(L8, p, training.TrainingOptions())
    node = next(n for n in g.nodes if n.name.startswith("B0" if backward else "F0"))
    return list(node.op.ops)


def attention_span(seq):
    """The ops of the first layer's attention call, from the K,V all-gather on."""
    i = next(k for k, o in enumerate(seq) if getattr(o, "name", "") == "cp_kv_all_gather")
    j = next(k for k, o in enumerate(seq) if getattr(o, "name", "") in ("cp_buffers", "cp_buffers_bwd"))
    return seq[i:j + 1]


def test_compiled_forward_waits_for_the_all_gather_before_step_0():
    """Traced by torch.compile, the all-gather is waited right after it is issued: the
    same all-gather (2 x 2 B x 32768 x 8 x 128) runs alone, then step 0's causal kernel,
    the 3 other blocks, and the fused merges: 3 x 10 B per output element (8192 x 32 x 128)
    and, once, K,V contiguous and their cat for the all-gather: 8 B per K,V element."""
    span = attention_span(compiled_ops(4))
    assert [o.name for o in span] == ["cp_kv_all_gather", "flash_attn_fwd",
                                      "flash_attn_fwd_cp_blocks", "cp_merge", "cp_buffers"]
    assert not any(isinstance(o, Overlap) for o in span)
    gather, step0 = span[0], span[1]
    assert isinstance(gather, Collective) and gather.bytes == 2 * 2 * 32768 * 8 * 128
    assert step0.causal and step0.flops == 4 * 32 * 8192 ** 2 * 128 / 2
    q, kv = 8192 * 32 * 128, 2 * 8192 * 8 * 128
    assert span[3].bytes == 3 * 10 * q
    assert span[4].bytes == 8 * kv


def test_compiled_backward_sends_each_step_after_its_kernel():
    """Backward, traced: the all-gather alone, the 4 step kernels, then the 4 fp32 dK,dV
    sends (2 x 4 B x 8192 x 8 x 128 each; priced as in eager mode, as reduce-scatters
    that move 3/4 of their bytes per rank over 4 ranks) not hidden, 4 fused
    accumulations of 10 B per Q and per K,V element; once: K,V contiguous and cat (8)
    and the received dK,dV back to 16-bit (6) = 14 per K,V element."""
    span = attention_span(compiled_ops(4, backward=True))
    assert [o.name for o in span] == ["cp_kv_all_gather", "flash_attn_bwd",
                                      "flash_attn_bwd_cp_blocks", "cp_dkv_ring", "cp_dkv_last",
                                      "cp_grad_accumulate", "cp_buffers_bwd"]
    local = 2 * 4 * 8192 * 8 * 128
    moved = sum(o.bytes * 3 / 4 for o in span if isinstance(o, Collective)
                and o.kind == "reduce_scatter")
    assert moved == pytest.approx(4 * local)
    q, kv = 8192 * 32 * 128, 2 * 8192 * 8 * 128
    assert span[5].bytes == 4 * (10 * q + 10 * kv)
    assert span[6].bytes == 14 * kv


def test_compiled_cp_moves_fewer_elementwise_bytes_than_eager():
    """Eager merges (42 per output element + 4 per K,V element per merged step) against the
    fused 10: at cp = 8 the forward's merges drop to 10 / (42 + 4 x 0.5) of the eager ones
    (K+V of 8 kv heads: half the elements of Q)."""
    eager = sum(o.bytes for o in ops(L8, 8) if getattr(o, "name", "") == "cp_merge")
    fused = sum(o.bytes for o in compiled_ops(8) if getattr(o, "name", "") == "cp_merge")
    assert fused / eager == pytest.approx(10 / 44)
