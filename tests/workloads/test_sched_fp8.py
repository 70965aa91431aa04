"""FP8 recipes: which GEMMs move to low precision and the cast kernels each recipe adds,
counted by hand (workloads/fp8.py)."""

import pytest

from workloads import fp8, training
from workloads.graph import Collective, Compute
from workloads.model import ModelSpec
from workloads.parallel import ParallelPlan

M = ModelSpec(layers=2, hidden=256, heads=4, ffn_hidden=1024, vocab=1000, seq_len=128,
              activation="gelu", bias=False, rope=True, tied_embeddings=False)
T = 128          # tokens per microbatch


def forward_ops(recipe):
    p = ParallelPlan(tp=1, pp=1, dp=1, micro_batch=1, global_batch=1)
    g = training.build(M, p, training.TrainingOptions(fp8_recipe=recipe))
    return [o for o in next(n for n in g.nodes if n.name == "F0_c0").op.ops if isinstance(o, Compute)]


def test_linear_gemms_in_fp8_rest_in_bf16():
    ops = forward_ops("delayed")
    dtype = {o.name: o.dtype for o in ops if o.op_class in ("gemm", "attention")}
    assert {dtype[n] for n in ("qkv", "attn_proj", "mlp_up", "mlp_down")} == {"fp8"}
    assert dtype["logits"] == "bf16" and dtype["flash_attn_fwd"] == "bf16"


@pytest.mark.parametrize("recipe,fused,unfused", [
    ("delayed", 1, 2 + 2 * 1),       # fused: the transposed copy; else read bf16, write two
    ("mxfp8", 1, 2 + 2 * 1),
    ("blockwise", 1, 2 + 2 * 1),
    ("tensorwise", 2 + 2 * 1 + 2, 2 + 2 * 1 + 2),   # separate cast after an amax pass
])
def test_forward_cast_bytes(recipe, fused, unfused):
    ops = forward_ops(recipe)
    casts = [o for o in ops if "_cast_" in o.name]
    # X of each linear: qkv, up (T x 256) and down (T x 1024) come from a norm or the
    # activation (fused producers); proj's input (T x 256) is cast on its own.
    fused_elems, unfused_elems = T * 256 + T * 256 + T * 1024, T * 256
    assert sum(o.bytes for o in casts) == pytest.approx(
        M.layers * (fused_elems * fused + unfused_elems * unfused))


def test_nvfp4_half_byte_and_hadamard():
    casts = {o.name: o for o in forward_ops("nvfp4") if "_cast_" in o.name}
    assert casts["qkv_nvfp4_cast_input"].bytes == T * 256 * (0.5 + 4)
    assert casts["attn_proj_nvfp4_cast_input"].bytes == T * 256 * (2 + 2 * 0.5 + 4)


def test_fp8_parameter_all_gather_moves_one_byte():
    p = ParallelPlan(tp=1, pp=1, dp=4, micro_batch=1, global_batch=4, zero=1)
    for param_bytes in (2, 1):
        g = training.build(M, p, training.TrainingOptions(fp8_recipe="delayed", param_bytes=param_bytes))
        ag = next(n.op for n in g.nodes if isinstance(n.op, Collective) and n.op.name == "param_all_gather")
        assert ag.bytes == training.stage_params(M, p, 0) * param_bytes


def test_recipe_support_by_catalog_dtypes():
    fp8.check_support("delayed", ["bf16", "fp8"], "H100")
    with pytest.raises(Exception, match="mxfp8 tensor cores"):
        fp8.check_support("mxfp8", ["bf16", "fp8"], "H100")
    with pytest.raises(Exception, match="fp8 tensor cores"):
        fp8.check_support("tensorwise", ["fp16", "bf16"], "A100")


def test_sequence_parallel_gathers_the_fp8_copy():
    p = ParallelPlan(tp=2, pp=1, dp=1, micro_batch=1, global_batch=1, sequence_parallel=True)

    def gathers(recipe):
        g = training.build(M, p, training.TrainingOptions(fp8_recipe=recipe))
        ops = next(n for n in g.nodes if n.name == "F0_c0").op.ops
        return {o.name: o.bytes for o in ops if isinstance(o, Collective) and o.kind == "all_gather"}
    bf16, fp8 = gathers(None), gathers("delayed")
    assert fp8["tp_ag_attn"] == bf16["tp_ag_attn"] / 2 and fp8["tp_ag_mlp"] == bf16["tp_ag_mlp"] / 2
    assert fp8["tp_ag_logits"] == bf16["tp_ag_logits"]          # the output layer stays BF16
