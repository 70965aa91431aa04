"""FP8 recipes on MoE layers, by hand: the expert, shared-expert and MLA GEMMs run in the
recipe's format, each grouped expert GEMM's input is quantized split by expert (one kernel
per local expert, one fused kernel under delayed scaling: TE's split_quantize), and the
router and attention stay 16-bit."""

from __future__ import annotations

import pytest

from workloads import fp8
from workloads.graph import CommGroup, Compute
from workloads.layers import LayerContext
from workloads.model import presets
from workloads.moe_layers import layer_backward_at, layer_forward_at, make_context

DS = presets()["deepseek-v3"]


def ctx(ep: int = 8) -> LayerContext:
    return LayerContext(DS, 1, 1, False, "bf16", CommGroup((0,), "tp"),
                        moe=make_context(tuple(range(ep)), (0,), "alltoall", 1.0, 8))


def computes(ops, prefix: str) -> list[Compute]:
    return [o for o in ops if isinstance(o, Compute) and o.name.startswith(prefix)]


def test_expert_gemms_get_one_cast_per_local_expert():
    """EP 8, balanced: a rank receives the n k = 4096 x 8 routed copies its peers send,
    1024 for each of its 32 local experts. MXFP8 casts each expert's fc1 input with its
    own kernel (TE split_quantize: no fused multi-tensor MXFP8 kernel): 32 casts of
    1024 x 7168 elements, read 2 B and written twice (row- and column-wise scaled
    copies) at 1 B: 4 B per element."""
    ops = fp8.rewrite(layer_forward_at(ctx(), 10), "mxfp8")
    fc1 = computes(ops, "expert_fc1")
    gemms = [o for o in fc1 if o.op_class == "gemm"]
    casts = [o for o in fc1 if o.op_class == "elementwise"]
    assert len(gemms) == 32 and {g.dtype for g in gemms} == {"mxfp8"}
    assert len(casts) == 32
    assert all(c.bytes == pytest.approx(1024 * 7168 * (2 + 2 * 1)) for c in casts)
    shared = [o for o in computes(ops, "shared_fc") if o.op_class == "gemm"]
    mla = [o for o in computes(ops, "mla_") if o.op_class == "gemm"]
    assert shared and {o.dtype for o in shared} == {"mxfp8"}
    assert len(mla) == 4 and {o.dtype for o in mla} == {"mxfp8"}
    router = [o for o in computes(ops, "router") if o.op_class == "gemm"]
    assert router and {o.dtype for o in router} == {"bf16"}
    assert {o.dtype for o in computes(ops, "flash_attn")} == {"bf16"}


def test_backward_casts_the_output_gradient_once_per_local_expert():
    """The interleaved dgrad / wgrad of the 32 experts' fc2: one cast of each expert's dY
    (1024 x 7168), plus the amax pass under current scaling (2 B more per element)."""
    ops = fp8.rewrite(layer_backward_at(ctx(), 10), "tensorwise")
    casts = [o for o in computes(ops, "expert_fc2_dgrad") if o.op_class == "elementwise"]
    assert len(casts) == 32
    assert all(c.bytes == pytest.approx(1024 * 7168 * (2 + 2 * 1 + 2)) for c in casts)
    wgrads = [o for o in computes(ops, "expert_fc2_wgrad") if o.op_class == "gemm"]
    assert len(wgrads) == 32 and {o.dtype for o in wgrads} == {"fp8"}


def test_delayed_scaling_quantizes_the_experts_in_one_fused_kernel():
    """FP8 delayed scaling: TE's nvte_multi_cast_transpose, one kernel for the 32 splits
    (32 x 1024 x 7168 elements, read 2 B, written twice at 1 B)."""
    ops = fp8.rewrite(layer_forward_at(ctx(), 10), "delayed")
    casts = [o for o in computes(ops, "expert_fc1") if o.op_class == "elementwise"]
    assert len(casts) == 1
    assert casts[0].bytes == pytest.approx(32 * 1024 * 7168 * 4)


def test_recipe_kernels_slow_a_moe_step():
    """The whole step: FP8 with its casts still beats BF16 on this GEMM-heavy layer."""
    from sim.scenario import parse
    from sim.simulate import simulate

    sc = {"name": "fp8", "cluster": {"system": "dgx-h100", "nodes": 1},
          "workload": {"kind": "training", "model": "qwen3-30b-a3b", "seq_len": 4096,
                       "global_batch": 8, "micro_batch": 1, "precision": "fp8",
                       "parallel": {"tp": 1, "pp": 1, "ep": 8, "zero": 1}},
          "sim": {"check_memory": False}}
    t_fp8 = simulate(parse(sc, "x"), band=False).iteration_time_s
    bf16 = sc | {"workload": sc["workload"] | {"precision": "bf16"}}
    t_bf16 = simulate(parse(bf16, "x"), band=False).iteration_time_s
    assert t_fp8 < t_bf16
