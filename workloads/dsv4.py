"""DeepSeek-V4 hybrid attention and Manifold-Constrained Hyper-Connections: the shape
formulas (parameters, FLOPs, KV-cache bytes) of ``attention: {kind: dsv4}`` and
``hyper_connections``.

Module shapes follow DeepSeek's reference inference code (deepseek-ai/DeepSeek-V4-Flash
``inference/model.py``: ``Attention``, ``Compressor``, ``Indexer``, ``Block.hc_pre`` /
``hc_post``) and the HF ``config.json`` keys, per layer ``i`` with ``compress_ratios[i]`` r:

- every layer: a low-rank query (``wq_a`` h -> q_lora, RMSNorm, ``wq_b`` q_lora -> heads x
  head_dim, a per-head RMS scale), ONE shared key-value head (``wkv`` h -> head_dim,
  RMSNorm; the same vector is key and value, shared-KV MQA), a per-head attention sink, and
  a grouped low-rank output (``wo_a``: o_groups blocks of heads x head_dim / o_groups ->
  o_lora, ``wo_b`` o_groups x o_lora -> h). Each query attends the last ``window`` raw
  entries (sliding window).
- r > 0: a ``Compressor`` (``wkv`` and ``wgate`` h -> coff x head_dim, a learned position
  bias ``ape`` (r, coff x head_dim), RMSNorm) pools every r consecutive tokens into one
  entry by a softmax over the gate scores; coff = 2 (overlapping windows) on the sparse
  layers, 1 otherwise.
- r = ``sparse_ratio`` (CSA, compressed sparse attention): a lightning ``Indexer``
  (``wq_b`` q_lora -> index_heads x index_head_dim, ``weights_proj`` h -> index_heads,
  its own overlapping compressor of index_head_dim) scores every compressed entry for
  every query (ReLU(q k) weighted over the heads) and keeps the ``index_topk`` best: the
  query attends window + index_topk entries.
- other r > 0 (HCA, heavily compressed attention): the query attends the window and every
  compressed entry before it (s / r).
- r = 0: the window only.

Hyper-connections (mHC): the residual stream is ``copies`` copies of h wide. Before each
sub-layer ``hc_pre`` reads them (RMS scale, a (copies h -> (2 + copies) copies) mixing GEMM,
``sinkhorn_iters`` Sinkhorn normalisations of the copies x copies combination matrix, a
weighted sum down to h); after it ``hc_post`` writes copies x h from the output and the
combined residual copies. Parameters per sub-layer: fn ((2 + c) c, c h), base ((2 + c) c),
scale (3); the output head adds its own c x c h ``hc_head`` reduction.

The hash router's token-id -> expert table (``tid2eid``, an int32 buffer of the first
``moe.hash_layers`` layers) is not counted as parameters: it is not trained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from workloads.model import ModelSpec
    from workloads.moe import AttentionSpec

COMPRESSOR_BYTES = 4      # the compressor's running kv / score state is fp32 (model.py)


class HyperConnections(BaseModel):
    """``hyper_connections: {copies, sinkhorn_iters}`` (HF config hc_mult,
    hc_sinkhorn_iters)."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    copies: int = Field(gt=1)
    sinkhorn_iters: int = Field(default=20, ge=0)

    @property
    def mixes(self) -> int:
        """Outputs of the mixing GEMM: pre (c), post (c) and combination (c x c) weights."""
        return (2 + self.copies) * self.copies


def dsv4(m: ModelSpec) -> AttentionSpec | None:
    return m.attention if m.attention is not None and m.attention.kind == "dsv4" else None


def ratio(m: ModelSpec, i: int) -> int:
    """Compression ratio of layer ``i`` (main layers, then the MTP entries where given)."""
    r = dsv4(m).compress_ratios
    return r[i] if i < len(r) else r[m.layers - 1]


def is_sparse(att: AttentionSpec, r: int) -> bool:
    """A CSA layer: the lightning indexer picks the compressed entries."""
    return r == att.sparse_ratio


def coff(att: AttentionSpec, r: int) -> int:
    """Compressor width factor: 2 for the overlapping (sparse) compressor, else 1."""
    return 2 if is_sparse(att, r) else 1


def _compressor_params(h: int, r: int, width: int, c: int) -> int:
    return r * c * width + 2 * h * c * width + width        # ape, wkv + wgate, norm


def attention_params(m: ModelSpec, i: int) -> int:
    """One DSV4 attention block of layer ``i`` (weights, inner norms, sinks)."""
    att, h, a = dsv4(m), m.hidden, m.heads
    ql, hd, r = att.q_lora_rank, att.head_dim, ratio(m, i)
    p = (h * ql + ql + ql * a * hd + h * hd + hd + a * hd * att.o_lora_rank
         + att.o_groups * att.o_lora_rank * h + a)
    if r:
        p += _compressor_params(h, r, hd, coff(att, r))
    if r and is_sparse(att, r):
        ih, ihd = att.index_heads, att.index_head_dim
        p += ql * ih * ihd + h * ih + _compressor_params(h, r, ihd, 2)
    return p


def attention_matmul_params(m: ModelSpec, i: int) -> int:
    """Weights one token multiplies in layer ``i``'s attention (GEMMs only)."""
    att, h, a = dsv4(m), m.hidden, m.heads
    ql, hd, r = att.q_lora_rank, att.head_dim, ratio(m, i)
    p = h * ql + ql * a * hd + h * hd + a * hd * att.o_lora_rank + att.o_groups * att.o_lora_rank * h
    if r:
        p += 2 * h * coff(att, r) * hd
    if r and is_sparse(att, r):
        ih, ihd = att.index_heads, att.index_head_dim
        p += ql * ih * ihd + h * ih + 2 * h * 2 * ihd
    return p


def keys(m: ModelSpec, i: int, context: float) -> float:
    """Entries one query at position ``context`` attends in layer ``i``: the window, plus
    the indexer's top-k of the context / r compressed entries (CSA) or all of them (HCA)."""
    att, r = dsv4(m), ratio(m, i)
    n = min(att.window, context)
    if r:
        n += min(att.index_topk, context / r) if is_sparse(att, r) else context / r
    return n


def index_entries(m: ModelSpec, i: int, context: float) -> float:
    """Compressed entries the indexer scores for one query (0 outside CSA layers)."""
    att, r = dsv4(m), ratio(m, i)
    return context / r if r and is_sparse(att, r) else 0.0


def attention_per_token(m: ModelSpec, i: int, context: float | None = None) -> float:
    """Half the forward FLOPs of one token's attention and index scores in layer ``i`` at
    ``context`` (default seq_len, the non-causal PaLM convention of workloads/moe.py):
    heads x keys x (head_dim scored + head_dim summed), and the indexer's index_heads x
    index_head_dim products with every compressed entry."""
    att = dsv4(m)
    s = m.seq_len if context is None else context
    return (keys(m, i, s) * m.heads * 2 * att.head_dim
            + index_entries(m, i, s) * att.index_heads * att.index_head_dim)


def hc_layer_params(m: ModelSpec) -> int:
    """mHC parameters of one layer (two sub-layers: attention, MLP)."""
    hc = m.hyper_connections
    if hc is None:
        return 0
    return 2 * (hc.mixes * hc.copies * m.hidden + hc.mixes + 3)


def hc_matmul_params(m: ModelSpec) -> int:
    hc = m.hyper_connections
    return 0 if hc is None else 2 * hc.mixes * hc.copies * m.hidden


def hc_head_params(m: ModelSpec) -> int:
    """The output head's reduction of the copies (hc_head fn, base, scale)."""
    hc = m.hyper_connections
    return 0 if hc is None else hc.copies * hc.copies * m.hidden + hc.copies + 1


# ----------------------------------------------------------------------------- KV cache

def entry_bytes(att: AttentionSpec, kv_bytes: float) -> float:
    """One cached entry. Under an FP8 cache DeepSeek's mixed format (DeepSeek-V4 report
    section 2.3.4: BF16 RoPE dimensions, FP8 for the rest; vLLM's fp8_ds_mla layout for V4;
    the reference code's UE8M0 scale per 64 elements): 448 + 7 + 128 = 583 bytes for Flash.
    Under a 16-bit cache every element at kv_bytes."""
    if kv_bytes >= 2:
        return att.head_dim * kv_bytes
    nope = att.head_dim - att.qk_rope_head_dim
    return nope * kv_bytes + nope / 64 + att.qk_rope_head_dim * 2


def index_key_bytes(att: AttentionSpec, kv_bytes: float) -> float:
    """One indexer key: under an FP8 cache FP8 with one fp32 scale (vLLM's FP8 indexer
    cache: 128 + 4 bytes), else index_head_dim elements at kv_bytes."""
    return att.index_head_dim * kv_bytes + (4 if kv_bytes < 2 else 0)


def kv_bytes_per_token(m: ModelSpec, i: int, kv_bytes: float) -> float:
    """Cached bytes per context token in layer ``i`` beyond the window: one entry per r
    tokens, and on CSA layers one indexer key per r tokens."""
    att, r = dsv4(m), ratio(m, i)
    if not r:
        return 0.0
    key = index_key_bytes(att, kv_bytes) if is_sparse(att, r) else 0.0
    return (entry_bytes(att, kv_bytes) + key) / r


def state_bytes(m: ModelSpec, i: int, kv_bytes: float) -> float:
    """Per-sequence fixed state of layer ``i``: the window's raw entries and the
    compressors' pending kv and score rows (fp32: coff r rows of coff x width, kv and
    score), the indexer's compressor on CSA layers."""
    att, r = dsv4(m), ratio(m, i)
    out = att.window * entry_bytes(att, kv_bytes)
    if r:
        c = coff(att, r)
        out += 2 * c * r * c * att.head_dim * COMPRESSOR_BYTES
        if is_sparse(att, r):
            out += 2 * 2 * r * 2 * att.index_head_dim * COMPRESSOR_BYTES
    return out


# ----------------------------------------------------------------------------- memory

def activation_bytes(m: ModelSpec, i: int, sb: float, t: int, shard: int) -> float:
    """Stored activations of layer ``i``'s attention on one TP rank for sb = s x b tokens
    (16-bit, as workloads/moe_memory.py counts MLA): the block input, the query latent
    before and after its norm, the local heads' queries, the KV entry before and after its
    norm, the compressors' kv and score rows (fp32) and pooled entries, on CSA layers the
    indexer's query, head weights, its compressor's rows and the top-k indices (int32),
    the attention output and the grouped output projection's output. The index scores are
    not kept (fused score / top-k kernels recompute them)."""
    att, h, r = dsv4(m), m.hidden, ratio(m, i)
    hd, lh = att.head_dim, m.heads / t
    out = 2 * sb * h / shard + 2 * 2 * sb * att.q_lora_rank + 2 * sb * lh * hd + 2 * 2 * sb * hd
    if r:
        c = coff(att, r)
        out += COMPRESSOR_BYTES * sb * 2 * c * hd + 2 * sb / r * hd
    if r and is_sparse(att, r):
        ih, ihd = att.index_heads, att.index_head_dim
        out += (2 * sb * ih * ihd + 2 * sb * ih + COMPRESSOR_BYTES * sb * 2 * 2 * ihd
                + 2 * sb / r * ihd + 4 * sb * att.index_topk)
    return out + 2 * sb * lh * hd + 2 * sb * att.o_groups / t * att.o_lora_rank


def hc_activation_bytes(m: ModelSpec, sb: float, shard: int) -> float:
    """Per layer, the hyper-connections' stored inputs beyond a residual stream's: each
    sub-layer's c-copy input (16-bit) for hc_pre's and hc_post's backward and its mixes and
    Sinkhorn iterates (fp32, (2 + c) c + iterations x c x c per token)."""
    hc = m.hyper_connections
    if hc is None:
        return 0.0
    c = hc.copies
    per = 2 * c * m.hidden + COMPRESSOR_BYTES * (hc.mixes + hc.sinkhorn_iters * c * c)
    return 2 * sb * per / shard
