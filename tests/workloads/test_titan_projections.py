"""TorchTitan's Llama runs wq / wk / wv and w1 / w3 as separate linears
(``separate_projections``, workloads/layers.py): shapes, FLOPs and bytes of the split
GEMMs and the input-gradient sum, counted by hand."""

from sim.scenario import parse
from sim.setup import resolve_setup
from workloads.graph import Block, CommGroup, Compute
from workloads.layers import LayerContext, layer_backward, layer_forward, separate_projections
from workloads.model import resolve
from workloads.stage_ops import _is_wgrad
from workloads.training import build

# 8 query heads of 64, 2 KV heads, SwiGLU of 1536
MODEL = {"layers": 2, "hidden": 512, "heads": 8, "kv_heads": 2, "ffn_hidden": 1536,
         "activation": "swiglu", "vocab": 32000, "seq_len": 1024, "rope": True}
T = 2 * 1024


def _ctx(tp=1, **kw):
    return LayerContext(resolve(MODEL), 2, tp, tp > 1, "bf16", CommGroup(tuple(range(tp)), "tp"), **kw)


def _gemms(ops):
    return {o.name: o for o in ops if isinstance(o, Compute) and o.op_class == "gemm"}


def test_forward_gemms_split_by_hand():
    ctx = _ctx(tp=2, separate_projections=True)
    g = _gemms(separate_projections(ctx, layer_forward(ctx)))
    assert "qkv" not in g and "mlp_up" not in g
    # per TP rank: Q 8/2 x 64 = 256, K and V 1 x 64; w1, w3 1536/2
    assert g["qkv_wq"].shape == (T, 256, 512) and g["qkv_wk"].shape == (T, 64, 512)
    assert g["qkv_wv"].shape == (T, 64, 512)
    assert g["mlp_up_w1"].shape == g["mlp_up_w3"].shape == (T, 768, 512)
    assert g["qkv_wq"].flops == 2.0 * T * 256 * 512
    # each reads the input and its weight, writes its output, 2 bytes an element
    assert g["qkv_wk"].bytes == 2 * (T * 512 + 512 * 64 + T * 64)
    assert g["attn_proj"].shape == (T, 512, 256)       # wo and w2 stay as they are


def test_backward_split_and_input_gradient_sum():
    ctx = _ctx(separate_projections=True)
    ops = separate_projections(ctx, layer_backward(ctx))
    g = _gemms(ops)
    # dgrad (T, 512, width) per part, wgrad (512, width, T)
    assert g["qkv_wk_dgrad"].shape == (T, 512, 128)
    assert g["qkv_wq_wgrad"].shape == (512, 512, T)
    assert g["mlp_up_w3_wgrad"].shape == (512, 1536, T)
    sums = {o.name: o.bytes for o in ops if o.name.endswith("_dgrad_sum")}
    # without TP the sum is fused into the norm's backward: it reads the 2 (1) further
    # partial (T, 512) gradients
    assert sums == {"qkv_dgrad_sum": 2 * 2 * T * 512, "mlp_up_dgrad_sum": 1 * 2 * T * 512}
    # before a plain TP reduce-scatter it is a pass of its own: read 3 (2), write 1;
    # with DTensor's chunk-and-cat copy it is fused into that copy again
    tp = _ctx(tp=2, separate_projections=True)
    sums = {o.name: o.bytes for o in separate_projections(tp, layer_backward(tp))
            if o.name.endswith("_dgrad_sum")}
    assert sums == {"qkv_dgrad_sum": 4 * 2 * T * 512, "mlp_up_dgrad_sum": 3 * 2 * T * 512}
    dt = _ctx(tp=2, separate_projections=True, tp_seq_dim_copies=True)
    sums = {o.name: o.bytes for o in separate_projections(dt, layer_backward(dt))
            if o.name.endswith("_dgrad_sum")}
    assert sums == {"qkv_dgrad_sum": 2 * 2 * T * 512, "mlp_up_dgrad_sum": 1 * 2 * T * 512}
    # the split keeps the fused GEMMs' FLOPs
    fused = _gemms(layer_backward(ctx))
    assert sum(o.flops for o in g.values()) == sum(o.flops for o in fused.values())
    assert not any(_is_wgrad(o) for o in ops if o.name.endswith("_dgrad_sum"))


def test_off_by_default_and_recompute_projections_kept():
    ctx = _ctx()
    assert separate_projections(ctx, layer_forward(ctx)) == layer_forward(ctx)
    from workloads.layers import selective_op_recompute
    on = _ctx(separate_projections=True)
    kept = _gemms(separate_projections(on, selective_op_recompute(on)))
    assert kept["qkv"].shape == (T, 128, 512)      # wk alone (K: 2 heads x 64)
    assert kept["mlp_up"].shape == (T, 1536, 512)  # w3 alone


def _step(**workload):
    sc = parse({"name": "t", "cluster": {"system": "dgx-h100", "nodes": 1},
                "workload": {"kind": "training", "model": MODEL, "global_batch": 8,
                             "micro_batch": 1, "parallel": {"tp": 2}, **workload}}, "t")
    s = resolve_setup(sc)
    return build(s.model, s.plan, s.options)


def test_key_reaches_the_graph():
    def names(g):
        return {o.name for n in g.nodes if isinstance(n.op, Block) for o in n.op.ops}
    on, off = names(_step(separate_projections=True)), names(_step())
    assert {"qkv_wq", "qkv_wv_dgrad", "mlp_up_w1_wgrad", "qkv_dgrad_sum"} <= on
    assert "qkv" in off and "qkv_wq" not in off


def _rope(ops, name="rope"):
    return [o.bytes for o in ops if getattr(o, "name", "") == name]


def test_complex_rope_passes_by_hand():
    """Q (8 heads) and K (2 heads) of 64: cast to fp32 (2 + 4), complex multiply (4 + 4),
    cast back (4 + 2) = 20 bytes an element, forward and backward; fused: 4, forward only."""
    elements = T * (8 + 2) * 64
    plain, cplx = _ctx(), _ctx(complex_rope=True)
    assert _rope(layer_forward(plain)) == [4 * elements]
    assert _rope(layer_backward(plain), "rope_bwd") == []
    assert _rope(layer_forward(cplx)) == [20 * elements]
    assert _rope(layer_backward(cplx), "rope_bwd") == [20 * elements]
    from workloads.layers import selective_op_recompute
    assert _rope(selective_op_recompute(cplx)) == [20 * T * 2 * 64]     # K alone
