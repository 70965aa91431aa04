"""The kernels an eager PyTorch implementation launches where a serving engine launches one
fused kernel per operator (``workload.kernels: eager``).

A serving engine (vLLM, SGLang, TensorRT-LLM) runs rotary embedding, the KV-cache write
and the gated activation as one fused kernel each; ``workloads/inference/ops.py`` prices
them so. A model written with plain PyTorch operators launches one kernel per operator,
even inside a CUDA graph (the graph removes the host's launch latency, not the kernels).
Counted from the implementation of ``benchmarks/gpu_serving.py`` (views, ``split``,
``chunk``, ``transpose`` and ``flatten`` of a contiguous tensor launch nothing):

- rotary embedding, once for the queries and once for the keys, 13 kernels each: the
  positions cast to float32, their outer product with the inverse frequencies, cos, sin,
  two casts to 16 bits, four products of a half of x with cos or sin, one subtraction,
  one addition and the ``stack`` (a concatenation) of the two rotated halves;
- the KV-cache write: one copy for K, one for V;
- SwiGLU: ``silu(gate)`` and its product with ``up`` (a non-gated MLP's GELU is one
  kernel, as fused);
- RMSNorm is one kernel in both (on CUDA ``F.rms_norm`` dispatches to
  ``aten::_fused_rms_norm``, pytorch/pytorch#153666, torch >= 2.8; the benchmark ran
  torch 2.11), and so are the residual additions, the GEMMs and
  scaled_dot_product_attention.

Each kernel is a ``pointwise`` Compute with its own bytes: a plain framework kernel,
priced on the profile's ``pointwise`` memory curve where it has one, else its base memory
curve (docs/inference.md).
"""

from __future__ import annotations

from workloads.graph import Compute

F32, I64 = 4, 8


def _k(nbytes: float, dtype: str, name: str) -> Compute:
    return Compute("pointwise", 0.0, float(nbytes), dtype, name=name)


def rope_kernels(T: int, heads: int, d: int, e: int, dtype: str, name: str) -> list[Compute]:
    """The 13 kernels of one rotary call on a (T, heads, d) tensor of ``e``-byte values.
    ``E`` = T x heads x d/2 elements per half; cos and sin are (T, d/2) tables."""
    half, E = d // 2, T * heads * (d // 2)
    table = T * half
    freq = [(T * (I64 + F32), "pos_float"), (F32 * (T + half + table), "freqs"),
            (2 * F32 * table, "cos"), ((F32 + e) * table, "cos_cast"),
            (2 * F32 * table, "sin"), ((F32 + e) * table, "sin_cast")]
    rotate = [(e * (2 * E + table), f"rot_mul{i}") for i in range(4)]
    rotate += [(3 * e * E, "rot_sub"), (3 * e * E, "rot_add"), (4 * e * E, "rot_stack")]
    return [_k(b, dtype, f"{name}.{n}") for b, n in freq + rotate]


def kv_write_kernels(T: int, kv_heads: int, d: int, e: int, kv_bytes: int,
                     dtype: str) -> list[Compute]:
    """One copy per cache (K, V): read the new tokens' values, write them into the cache."""
    one = T * kv_heads * d * (e + kv_bytes)
    return [_k(one, dtype, "kv_write.k"), _k(one, dtype, "kv_write.v")]


def activation_kernels(T: int, ffn: int, e: int, gated: bool, dtype: str) -> list[Compute]:
    """SwiGLU: silu(gate) reads and writes (T, ffn); the product reads two and writes one.
    Non-gated (GELU): one kernel reading and writing (T, ffn)."""
    if not gated:
        return [_k(2 * e * T * ffn, dtype, "activation")]
    return [_k(2 * e * T * ffn, dtype, "activation.silu"),
            _k(3 * e * T * ffn, dtype, "activation.mul")]
