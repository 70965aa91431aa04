"""What torch.compile's micro-pipeline TP pass leaves unfused in TorchTitan's async TP,
and the copies its fused ops' layout costs, checked by hand."""

import pytest

from workloads import training
from workloads.graph import Collective, Compute, Overlap
from workloads.model import presets
from workloads.parallel import ParallelPlan

L8 = presets()["llama3-8b"].with_seq_len(4096)      # hidden 4096, SwiGLU (w1, w3)
WGRADS = ("qkv_wgrad", "mlp_up_wgrad", "attn_proj_wgrad", "mlp_down_wgrad")


def _ops(backward=True, mode="async", micro_batch=1, **opts):
    p = ParallelPlan(tp=4, pp=1, dp=1, micro_batch=micro_batch, global_batch=micro_batch,
                     sequence_parallel=True, tp_comm_overlap=mode)
    g = training.build(L8, p, training.TrainingOptions(**{"dtensor_tp": True, **opts}))
    node = next(n for n in g.nodes if n.name.startswith("B0" if backward else "F0"))
    return list(node.op.ops)


def _names(seq):
    return [getattr(o, "name", "") for o in seq]


def test_input_gradient_summed_over_linears_is_reduce_scattered_plainly():
    """TorchTitan's wq, wk, wv (and w1, w3) share one gathered input, so its gradient is
    a sum of their dgrads: reduce_scatter(add(mm, mm, mm)), which the pass
    (_find_producer_matmul: mm or reshape(mm) only) does not fuse. Those reduce-scatters
    stay plain collectives after the weight gradients, with no partial-sum kernel; the
    output-gradient all-gathers before attn_proj / mlp_down dgrad stay fused."""
    bwd = _ops()
    pairs = {o.main[0].name: o.hidden[0].kind for o in bwd if isinstance(o, Overlap)}
    assert pairs["attn_proj_dgrad"] == pairs["mlp_down_dgrad"] == "all_gather"
    assert "qkv_dgrad" not in pairs and "mlp_up_dgrad" not in pairs
    names = _names(bwd)
    for gemm, rs in (("qkv", "tp_attn_in_bwd"), ("mlp_up", "tp_mlp_in_bwd")):
        i = names.index(rs)
        assert isinstance(bwd[i], Collective) and bwd[i].kind == "reduce_scatter"
        assert names[i - 2:i] == [f"{gemm}_dgrad", f"{gemm}_wgrad"]
        assert f"{gemm}_dgrad_rs_partials_sum" not in names
    fwd = _ops(backward=False)
    assert {o.main[0].name for o in fwd if isinstance(o, Overlap)} >= {
        "qkv", "attn_proj", "mlp_up", "mlp_down"}


def test_dtensor_seq_copies_stay_only_with_plain_collectives():
    """With the sequence sharded on dim 1 (DTensor), funcol's chunk-and-cat belongs to the
    pattern the pass replaces: fused collectives lose it, the plain reduce-scatter keeps
    its packing copy (read and write 2 B x 4,096 tokens x 4,096)."""
    bwd = _ops(tp_seq_dim_copies=True)
    names = _names(bwd)
    i = names.index("tp_attn_in_bwd")
    assert names[i - 1] == "tp_attn_in_bwd_seq_cat"
    assert bwd[i - 1].bytes == 2 * 2 * 4096 * 4096
    fused = ("tp_mlp_out_bwd", "tp_attn_out_bwd")           # gathers before proj / down dgrad
    assert not any(n.startswith(fused) and n.endswith("_seq_cat") for n in names)
    fwd = _names(_ops(backward=False, tp_seq_dim_copies=True))
    assert not any(n.startswith(("tp_ag_attn", "tp_attn_out", "tp_ag_mlp", "tp_mlp_out"))
                   and n.endswith("_seq_cat") for n in fwd)


def test_shard_major_gathered_tensors_copied_for_bf16_weight_gradients():
    """The fused all-gather returns its gathered input as a shard-major view
    (movedim(gather_dim, 0) ... unflatten): with 2 sequences of 4,096 tokens a rank
    sharded on dim 1, a BF16 weight gradient's reshape to (8,192, 4,096) copies it: read
    and write 2 B x 8,192 x 4,096 before each of the 4 weight gradients of a layer that
    read a gathered operand."""
    bwd = _ops(micro_batch=2, tp_seq_dim_copies=True)
    copies = [o for o in bwd if isinstance(o, Compute) and o.name.endswith("_shard_major_copy")]
    assert len(copies) == 4 * L8.layers
    assert {o.bytes for o in copies} == {2 * 2 * 8192 * 4096}
    names = _names(bwd)
    for w in WGRADS:
        assert names[names.index(w) - 1] == f"{w}_shard_major_copy"


@pytest.mark.parametrize("kw", [
    {"micro_batch": 1, "tp_seq_dim_copies": True},     # one sequence: the view is contiguous
    {"micro_batch": 2},                                 # gather on dim 0 (no DTensor dim-1 shard)
    {"micro_batch": 2, "tp_seq_dim_copies": True, "fp8_recipe": "tensorwise"},  # FP8 re-lays out anyway
    {"micro_batch": 2, "tp_seq_dim_copies": True, "mode": "none"},   # vanilla TP: funcol's cat
])
def test_no_shard_major_copy(kw):
    assert not any(n.endswith("_shard_major_copy") for n in _names(_ops(**kw)))


def test_local_shard_copied_into_symmetric_memory_before_the_first_chunk():
    """_pipelined_all_gather_and_consume copies the rank's shard into its symmetric-memory
    buffer on the compute stream before the first GEMM chunk: read and write 1/4 of the
    gathered 2 B x 4,096 x 4,096 (TP 4), right before each fused all-gather's pair."""
    fwd = _ops(backward=False)
    for gemm in ("qkv", "mlp_up"):
        i = next(k for k, o in enumerate(fwd)
                 if isinstance(o, Overlap) and o.main[0].name == gemm)
        assert fwd[i - 1].name == f"{gemm}_ag_local_copy"
        assert fwd[i - 1].bytes == 2 * 2 * 4096 * 4096 / 4
    assert not any(n.endswith("_ag_local_copy") for n in _names(_ops(backward=False, mode="ring")))
