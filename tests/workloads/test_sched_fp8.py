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


def forward_casts(recipe, **opts):
    p = ParallelPlan(tp=1, pp=1, dp=1, micro_batch=1, global_batch=1)
    g = training.build(M, p, training.TrainingOptions(fp8_recipe=recipe, **opts))
    ops = next(n for n in g.nodes if n.name == "F0_c0").op.ops
    return {o.name: o.bytes for o in ops if isinstance(o, Compute) and "_cast_" in o.name}


def test_nvfp4_quantize_bytes_by_transformer_engine_release():
    # TE 2.14+: amax pass after the Hadamard transform (read 2), one kernel reading the
    # BF16 input (2) and writing the row-wise and column-wise 4-bit copies, each with one
    # E4M3 scale per 16 elements (2 x (0.5 + 0.0625)): 5.125 bytes per element.
    assert fp8.nvfp4_bytes(1000) == pytest.approx(1000 * 5.125)
    # TE 2.12-2.13: the row-wise quantize and the RHT column-wise cast each read it: 7.125.
    assert fp8.nvfp4_bytes(1000, fused_rht_cast=False) == pytest.approx(1000 * 7.125)


def test_nvfp4_inputs_are_not_quantized_by_the_norm_or_activation():
    # With the RHT quantizer TE's norm and activation write BF16 (Impl::UNFUSED), so the
    # QKV / MLP-up / MLP-down inputs pay the whole quantize, as the attention projection's
    # does: T x 256, T x 256, T x 1024 and T x 256 elements.
    for fused, per_elem in ((True, 5.125), (False, 7.125)):
        casts = forward_casts("nvfp4", fp8_fused_rht_cast=fused)
        assert casts["qkv_nvfp4_cast_input"] == pytest.approx(T * 256 * per_elem)
        assert casts["attn_proj_nvfp4_cast_input"] == pytest.approx(T * 256 * per_elem)
        assert casts["mlp_down_nvfp4_cast_input"] == pytest.approx(T * 1024 * per_elem)
    # MXFP8's norm still writes the first copy: only the column-wise copy (1 byte) is extra
    assert forward_casts("mxfp8")["qkv_mxfp8_cast_input"] == pytest.approx(T * 256 * 1)


def test_fused_rht_cast_is_an_nvfp4_key():
    from sim.training_config import Fp8Config
    assert Fp8Config(recipe="nvfp4", fused_rht_cast=False).fused_rht_cast is False
    with pytest.raises(ValueError, match="applies to recipe nvfp4"):
        Fp8Config(recipe="mxfp8", fused_rht_cast=False)


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
