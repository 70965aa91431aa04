"""FP8 with TP overlap, PyTorch's all-gather CP merge passes and the Grand Teton H100,
checked by hand."""

import pytest

from hw_models import catalog
from workloads import training
from workloads.graph import Collective, Compute, Overlap
from workloads.model import presets
from workloads.parallel import ParallelPlan

L8 = presets()["llama3-8b"].with_seq_len(32768)   # 32 heads, 8 kv heads, head_dim 128


def first(g, prefix):
    return list(next(n for n in g.nodes if n.name.startswith(prefix)).op.ops)


@pytest.mark.parametrize("recipe", ["tensorwise", "delayed"])
def test_fp8_tp_all_gathers_overlap_their_gemm_after_the_cast(recipe):
    """Every sequence-parallel all-gather and reduce-scatter of a layer sits in an Overlap
    with its GEMM also under FP8 (4 per layer forward, as with BF16); the input cast runs
    before the pair, as the FP8 copy is what is gathered."""
    p = ParallelPlan(tp=4, pp=1, dp=1, micro_batch=1, global_batch=1, sequence_parallel=True,
                     tp_comm_overlap="ring")
    g = training.build(L8.with_seq_len(4096), p, training.TrainingOptions(fp8_recipe=recipe))
    fwd = first(g, "F0")
    pairs = [o for o in fwd if isinstance(o, Overlap)]
    assert len(pairs) == 4 * L8.layers + 1             # + the head's gather before the logits
    assert not any(isinstance(o, Collective) and o.kind in ("all_gather", "reduce_scatter")
                   and o.name.startswith(("tp_attn", "tp_ag", "tp_mlp")) for o in fwd)
    i = next(k for k, o in enumerate(fwd) if isinstance(o, Overlap) and o.main[0].name == "qkv")
    assert "_cast_" in fwd[i - 1].name and fwd[i].main[0].dtype == "fp8"
    # the gathered copy is FP8: 1 byte per element of the (s, h) input
    assert fwd[i].hidden[0].bytes == 4096 * L8.hidden


def test_allgather_cp_merge_and_accumulate_bytes_by_hand():
    """PyTorch's context_parallel, cp = 4: 3 merged blocks per layer forward, 4 accumulated
    steps backward (step 0's dK,dV are added and sent too). Rank: 8192 tokens, 32 heads x
    128 (Q and output: 33.5 M elements), 8 kv heads (K+V: 16.8 M).
    Forward 3 x (42 x 33.5 M + 4 x 16.8 M); backward 4 x (10 x 33.5 M + 18 x 16.8 M)."""
    p = ParallelPlan(tp=1, pp=1, dp=1, micro_batch=1, global_batch=4, cp=4, cp_kind="allgather")
    g = training.build(L8, p, training.TrainingOptions())
    q, kv = 8192 * 32 * 128, 2 * 8192 * 8 * 128
    fwd = [o for o in first(g, "F0") if isinstance(o, Compute) and o.name == "cp_merge"]
    bwd = [o for o in first(g, "B0") if isinstance(o, Compute) and o.name == "cp_grad_accumulate"]
    assert len(fwd) == L8.layers and fwd[0].op_class == "elementwise"
    assert fwd[0].bytes == 3 * (42 * q + 4 * kv)
    assert bwd and bwd[0].bytes == 4 * (10 * q + 18 * kv)


@pytest.mark.parametrize("cp", [2, 8])
def test_allgather_cp_once_per_call_passes_by_hand(cp):
    """Once per call, whatever cp (32,768 tokens, so 32768 / cp per rank): forward K,V made
    contiguous (2 + 2 per K,V element), step 0's output to fp32 (2 + 4) and the merged
    output back to 16-bit (4 + 2): 12 per Q element + 4 per K,V element; backward K,V
    contiguous (4), fp32 dQ, dK, dV zeroed (4 each), dQ and dK,dV back to 16-bit (6 each):
    10 per Q element + 14 per K,V element. Absent without CP."""
    p = ParallelPlan(tp=1, pp=1, dp=1, micro_batch=1, global_batch=cp, cp=cp, cp_kind="allgather")
    g = training.build(L8, p, training.TrainingOptions())
    t = 32768 // cp
    q, kv = t * 32 * 128, 2 * t * 8 * 128
    fwd = [o for o in first(g, "F0") if getattr(o, "name", "") == "cp_buffers"]
    bwd = [o for o in first(g, "B0") if getattr(o, "name", "") == "cp_buffers_bwd"]
    assert len(fwd) == L8.layers and fwd[0].bytes == 12 * q + 4 * kv
    assert bwd and bwd[0].bytes == 10 * q + 14 * kv
    p1 = ParallelPlan(tp=1, pp=1, dp=1, micro_batch=1, global_batch=1)
    g1 = training.build(L8, p1, training.TrainingOptions())
    assert not any("cp_buffers" in getattr(o, "name", "") for o in first(g1, "B0"))


def test_ring_cp_has_no_merge_ops():
    p = ParallelPlan(tp=1, pp=1, dp=1, micro_batch=1, global_batch=4, cp=4)
    g = training.build(L8, p, training.TrainingOptions())
    assert not any(getattr(o, "name", "") == "cp_merge" for o in first(g, "F0"))


def test_grand_teton_h100_is_the_published_part():
    """torchtitan's benchmark hosts: 96 GB HBM2e at 2.4 TB/s, 500 W, peaks at the H100
    NVL's (the lower end of 'between SXM and NVL')."""
    gpu = catalog.system("grand-teton-h100").gpu
    gpu = catalog.gpu(gpu) if isinstance(gpu, str) else gpu
    assert (gpu.hbm_gb, gpu.hbm_tb_s, gpu.tdp_w) == (96, 2.4, 500)
    assert gpu.peak_tflops["bf16"] == 835 and gpu.peak_tflops["fp8"] == 1671


@pytest.mark.parametrize("fused_amax, per_element", [(False, 6), (True, 4)])
def test_tensorwise_cast_bytes_with_the_amax_fused_into_the_norm(fused_amax, per_element):
    """QKV's input (made by the input norm), (T, h) = (4096, 4096): read 2 + FP8 copy 1 +
    transposed copy 1, plus a 2-byte amax pass unless torch.compile fused it."""
    p = ParallelPlan(tp=1, pp=1, dp=1, micro_batch=1, global_batch=1)
    opts = training.TrainingOptions(fp8_recipe="tensorwise", fp8_fused_amax=fused_amax)
    g = training.build(L8.with_seq_len(4096), p, opts)
    cast = next(o for o in first(g, "F0") if o.name == "qkv_tensorwise_cast_input")
    assert cast.bytes == per_element * 4096 * L8.hidden
    # the attention output (made by the attention kernel) keeps its amax pass either way
    proj = next(o for o in first(g, "F0") if o.name == "attn_proj_tensorwise_cast_input")
    assert proj.bytes == 6 * 4096 * L8.hidden
