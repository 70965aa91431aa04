"""workload.kernels: eager launches one kernel per PyTorch operator (workloads/inference/eager.py):
kernel counts and bytes of a tiny Llama-style layer, counted by hand from
benchmarks/gpu_serving.py's forward."""

from workloads.inference.ops import IterationOps, Shape
from workloads.model import ModelSpec

# head_dim 64 (rotary halves of 32), GQA 4 query / 2 KV heads, SwiGLU of 512 per gate.
TINY = ModelSpec(layers=1, hidden=256, heads=4, kv_heads=2, ffn_hidden=512, vocab=1000,
                 seq_len=128, activation="swiglu", norm="rmsnorm", bias=False, rope=True,
                 tied_embeddings=False, dropout=False)


def _dense(kernels: str, T: int = 1):
    return IterationOps(TINY, 1, 1, "bf16", kernels=kernels).dense_ops(T)


def test_fused_layer_has_one_kernel_per_operator():
    ops = _dense("fused")
    assert [o.op_class for o in ops].count("gemm") == 4
    assert [o.name for o in ops if o.op_class != "gemm"] == [
        "input_norm", "rope", "kv_write", "residual_add", "post_attn_norm", "activation",
        "residual_add"]


def test_eager_layer_launches_what_the_pytorch_forward_launches():
    ops = _dense("eager")
    names = [o.name for o in ops]
    # 2 x 13 rotary kernels, 2 KV copies, silu + mul; norms, adds and GEMMs as fused
    assert len(ops) == 4 + 2 + 26 + 2 + 2 + 2 == 38
    assert sum(n.startswith("rope_q.") for n in names) == 13
    assert sum(n.startswith("rope_k.") for n in names) == 13
    assert [n for n in names if n.startswith(("kv_write", "activation"))] == [
        "kv_write.k", "kv_write.v", "activation.silu", "activation.mul"]
    assert {o.op_class for o in ops if o.name.startswith(("rope", "kv", "activation"))} == {"pointwise"}


def test_eager_bytes_by_hand_one_token():
    b = {o.name: o.bytes for o in _dense("eager")}
    # queries: E = 1 token x 4 heads x 32 = 128 bf16 values per half; cos/sin tables 32 fp32
    assert b["rope_q.pos_float"] == 8 + 4                 # int64 in, fp32 out
    assert b["rope_q.freqs"] == 4 * (1 + 32 + 32)         # pos, inv_freq in; table out
    assert b["rope_q.cos"] == b["rope_q.sin"] == 2 * 4 * 32
    assert b["rope_q.cos_cast"] == (4 + 2) * 32
    assert b["rope_q.rot_mul0"] == 2 * (128 + 32 + 128)   # half of x and the table in, product out
    assert b["rope_q.rot_sub"] == b["rope_q.rot_add"] == 3 * 2 * 128
    assert b["rope_q.rot_stack"] == 2 * 2 * 256            # both halves in, 256 values out
    assert sum(v for k, v in b.items() if k.startswith("rope_q.")) == 6032
    assert sum(v for k, v in b.items() if k.startswith("rope_k.")) == 3728   # 2 KV heads
    assert b["kv_write.k"] == b["kv_write.v"] == 2 * 64 * (2 + 2)
    assert b["activation.silu"] == 2 * 2 * 512 and b["activation.mul"] == 3 * 2 * 512


def test_attention_sits_after_the_eager_kv_write():
    names = [o.name for o in IterationOps(TINY, 1, 1, "bf16", kernels="eager").layer_ops(
        Shape(decode_seqs=2, decode_kv=64, logits=2))]
    assert names.index("decode_attn") == names.index("kv_write.v") + 1
