"""RoPE of a YaRN model (gpt-oss) runs as Megatron-Core's unfused PyTorch code
(Megatron-Bridge turns ``apply_rope_fusion`` off for any position embedding but plain
"rope"): 12 e N bytes forward in 12 kernels per call pair, 13 e N backward; a plain-RoPE
model keeps TE's fused kernel (2 e N forward, no separate backward pass). Sizes by hand."""

from workloads.graph import CommGroup
from workloads.host_launch import launches
from workloads.layer_attention import attn_backward, attn_forward
from workloads.layers import LayerContext
from workloads.model import ModelSpec

S, HEADS, KV, D = 128, 8, 2, 32
N = 2 * S * (HEADS + KV) * D         # micro-batch 2: query and key elements (bf16: 2 bytes)


def _ctx(scaling: str | None) -> LayerContext:
    model = ModelSpec(layers=2, hidden=256, heads=HEADS, kv_heads=KV, kv_channels=D, vocab=1000,
                      seq_len=S, ffn_hidden=512, activation="swiglu", norm="rmsnorm", rope=True,
                      rope_scaling=scaling, tied_embeddings=False,
                      moe={"experts": 4, "top_k": 2, "expert_ffn_hidden": 128})
    return LayerContext(model, 2, 1, False, "bf16", CommGroup((0,), "tp"))


def _rope(ops):
    return [o for o in ops if getattr(o, "name", "").startswith("rope")]


def test_plain_rope_keeps_the_fused_kernel():
    (fwd,) = _rope(attn_forward(_ctx(None), False))
    assert fwd.bytes == 2 * 2 * N and launches(fwd) == 1
    assert not _rope(attn_backward(_ctx(None), False))


def test_yarn_rope_runs_unfused_both_ways():
    ctx = _ctx("yarn")
    (fwd,) = _rope(attn_forward(ctx, False))
    # mul, neg (half), cat, mul, add, final cat: 2 + 1 + 2 + 2 + 3 + 2 = 12 bytes-of-e per element
    assert fwd.bytes == 12 * 2 * N
    assert launches(fwd) == 2 * 12              # query and key: 6 big + 6 cos/sin kernels each
    bwd_ops = attn_backward(ctx, False)
    (bwd,) = _rope(bwd_ops)
    # two products 2 + 2, neg 1, chunk cat 2, sum 3, slice zeros + copy 3: 13
    assert bwd.bytes == 13 * 2 * N and launches(bwd) == 2 * 7
    names = [o.name for o in bwd_ops]
    assert names.index("flash_attn_bwd") < names.index("rope_bwd") < names.index("qkv_dgrad")
