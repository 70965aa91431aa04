"""The operations of a serving iteration of a hybrid Mamba-2 / attention / MLP / MoE model
(Nemotron-H, Nemotron 3; ``hybrid_pattern``, workloads/mamba.py), as vLLM runs it.

Every layer is ONE sub-layer (pre-norm, body, residual add) of the kind its pattern
character names; attention (``*``), MLP (``-``) and MoE (``E``) bodies are those of
workloads/inference/moe_ops.py (paged KV cache, router and experts). A Mamba layer (``M``)
keeps no KV cache: vLLM's ``MambaMixer2`` (vllm/model_executor/layers/mamba/mamba_mixer2.py)
holds per running sequence a conv state ((conv_kernel - 1) x (d_inner + 2 G N) / tp) and an
SSM state (heads / tp x head_dim x N) (``MambaStateShapeCalculator.mamba2_state_shape``,
vllm/model_executor/layers/mamba/mamba_utils.py; groups are replicated up to tp when
G % tp != 0, ``extra_groups_for_head_shards``). The conv state is in the model dtype
(16-bit); the SSM state is fp32: ``MambaStateDtypeCalculator`` resolves
``mamba_ssm_cache_dtype: auto`` to the model dtype, but vLLM's per-model hook
``NemotronHForCausalLMConfig`` (vllm/model_executor/models/config.py,
``DEFAULT_MAMBA_SSM_CACHE_DTYPE = "float32"``, "only float32 is known to have no accuracy
issues") turns it to float32 for NemotronH models, and NeMo RL's Nemotron recipes set
``mamba_ssm_cache_dtype: float32`` explicitly.

A Mamba layer's kernels over an iteration of T = prefill + decode tokens (MambaMixer2's
``forward_cuda``): ``in_proj`` (T, 2 d_inner + 2 G N + heads, h) and ``out_proj`` GEMMs at
the weight precision; for the prefill chunks ``causal_conv1d_fn`` (read and write the
conv channels) and the SSD chunked scan ``mamba_chunk_scan_combined_varlen``, priced by
the training forward's kernels (workloads/layer_mamba.py ``ssd_forward``) over the prefill
tokens in whole chunks, with every prefilling sequence's initial state gathered and final
state written (conv and SSM state, read + write); for the decode tokens
``causal_conv1d_update`` and ``selective_state_update``: memory-bound reads and writes of
every decoding sequence's conv and SSM state plus its x, B, C, dt, z and output;
``rms_norm_gated`` (read x and z, write) over T; the TP all-reduce of the output.
"""

from __future__ import annotations

import math
from collections import Counter

from hw_models.errors import InfeasiblePlanError
from workloads import mamba as _mamba
from workloads.graph import Compute
from workloads.inference.moe_ops import MoEIterationOps
from workloads.inference.ops import Shape
from workloads.layer_mamba import ssd_forward
from workloads.layers import mem, tp_comm

CONV_STATE_BYTES = 2      # model dtype (bf16 / fp16): mamba_cache_dtype auto
SSM_STATE_BYTES = 4       # float32: vLLM's NemotronH default mamba_ssm_cache_dtype

NAMES = {_mamba.MAMBA: "mamba", _mamba.ATTENTION: "attn", _mamba.MLP: "mlp", _mamba.MOE: "moe"}

# Kernels of a Mamba layer that depend on the batch's prefill / decode split, not on T alone.
MAMBA_CORE = ("mamba_conv1d", "mamba_prefill_state_io", "ssd_chunk_cumsum", "ssd_chunk_state",
              "ssd_state_passing", "ssd_bmm_chunk", "ssd_chunk_scan", "mamba_conv1d_update",
              "mamba_selective_state_update")


def check_hybrid_plan(model, tp: int, ep: int) -> None:
    """Raise InfeasiblePlanError where vLLM cannot shard the Mamba layers this way (MambaMixer2
    asserts tp divides the heads, and the groups unless there is one), or for what is not
    modelled (expert parallelism of a hybrid model's serving)."""
    s = model.mamba
    if s is not None and s.heads % tp:
        raise InfeasiblePlanError(f"tp={tp} must divide the Mamba heads ({s.heads}): vLLM "
                                  "splits the Mamba-2 heads over tensor parallelism")
    if s is not None and s.groups % tp and s.groups != 1:
        raise InfeasiblePlanError(f"tp={tp} must divide the Mamba groups ({s.groups}), or the "
                                  "model have one group: vLLM's MambaMixer2 replicates only a "
                                  "single group over the TP ranks")
    if ep > 1:
        raise InfeasiblePlanError("parallel.ep > 1 with a hybrid Mamba model is not modelled "
                                  "for serving; use tp (the experts are split over it)")
    if _mamba.ATTENTION not in model.hybrid_pattern:
        raise InfeasiblePlanError("serving a hybrid model without attention layers (*) is not "
                                  "modelled: the paged cache is sized by the attention KV")


def stage_counts(pattern: str, pp: int) -> list[Counter]:
    """Layers of each kind per pipeline stage (contiguous stages, the first ones one layer
    longer, as the serving graph splits them)."""
    n = len(pattern)
    sizes = [n // pp + (1 if i < n % pp else 0) for i in range(pp)]
    out, first = [], 0
    for size in sizes:
        out.append(Counter(pattern[first:first + size]))
        first += size
    return out


class HybridIterationOps(MoEIterationOps):
    hybrid = True

    def __init__(self, model, tp: int, pp: int, precision: str, kv_bytes: int | None = None,
                 **moe):
        super().__init__(model, tp, pp, precision, kv_bytes, **moe)
        self.setup_hybrid()

    def setup_hybrid(self) -> None:
        """Check the plan and count each stage's layers of each kind (after configure)."""
        check_hybrid_plan(self.model, self.tp, self.ep)
        self.stages = stage_counts(self.model.hybrid_pattern, self.pp)

    # ---- memory -------------------------------------------------------------------
    def _local(self) -> tuple[int, int, int]:
        """(local heads, local groups after vLLM's replication, local conv channels)."""
        s, t = self.model.mamba, self.tp
        groups = s.groups + (0 if s.groups % t == 0 else t - s.groups)
        return s.heads // t, groups // t, (s.d_inner + 2 * groups * s.state_dim) // t

    def conv_state_bytes(self) -> float:
        """One sequence's conv state in one Mamba layer on one GPU."""
        return (self.model.mamba.conv_kernel - 1) * self._local()[2] * CONV_STATE_BYTES

    def ssm_state_bytes(self) -> float:
        """One sequence's SSM state in one Mamba layer on one GPU."""
        s = self.model.mamba
        return self._local()[0] * s.head_dim * s.state_dim * SSM_STATE_BYTES

    def state_bytes_per_seq(self) -> float:
        """A running sequence's Mamba state on one GPU: its stage's Mamba layers (the
        stage with the most of them) x (conv + SSM state)."""
        if self.model.mamba is None:
            return 0.0
        layers = max(c[_mamba.MAMBA] for c in self.stages)
        return layers * (self.conv_state_bytes() + self.ssm_state_bytes())

    def kv_bytes_per_token(self) -> float:
        """K and V of the attention layers only (the stage with the most of them)."""
        m = self.model
        layers = max(c[_mamba.ATTENTION] for c in self.stages)
        kvh = max(1, m.kv_heads_ // self.tp)
        return 2.0 * layers * kvh * m.head_dim * self.kv_bytes

    def kinds(self) -> Counter:
        return Counter(self.model.hybrid_pattern)

    # ---- sub-layers -----------------------------------------------------------------
    def mamba_ops(self, s: Shape) -> list:
        """The Mamba mixer of one layer (module docstring), pre-norm and residual excluded."""
        m, sp = self.model, self.model.mamba
        T = s.prefill_tokens + s.decode_seqs
        ctx = self._ctx(T)
        e, h = ctx.act_bytes, m.hidden
        H, G, conv = self._local()
        d = H * sp.head_dim
        width = 2 * d + 2 * G * sp.state_dim + H
        state = self.conv_state_bytes() + self.ssm_state_bytes()
        ops: list = [self._gemm(T, width, h, "mamba_in_proj")]
        if s.prefill_tokens:
            Tp = s.prefill_tokens
            pctx = self._ctx(Tp)
            # a shape built without its prefill sequence count holds at least one
            ops += [mem(ctx, "elementwise", 2 * e * Tp * conv, "mamba_conv1d"),
                    mem(ctx, "elementwise", 2 * state * max(1, s.prefill_seqs),
                        "mamba_prefill_state_io"),
                    *ssd_forward(pctx)]
        if s.decode_seqs:
            B = s.decode_seqs
            conv_state = self.conv_state_bytes()
            ops += [mem(ctx, "elementwise", B * (2 * conv_state + 2 * e * conv),
                        "mamba_conv1d_update"),
                    self._state_update(B, H, G, d)]
        ops += [mem(ctx, "norm", 3 * e * T * d, "mamba_gated_norm"),
                self._gemm(T, h, d, "mamba_out_proj")]
        return ops

    def _state_update(self, B: int, H: int, G: int, d: int) -> Compute:
        """``selective_state_update`` for B decoding sequences: read and write each one's
        fp32 SSM state (H P N), read x, z, dt, B, C, write y; per state element a decay
        multiply, an input multiply-add and the C contraction (~5 FLOPs)."""
        sp, e = self.model.mamba, 2
        elems = H * sp.head_dim * sp.state_dim
        io = e * (3 * d + H + 2 * G * sp.state_dim)
        return Compute("elementwise", 5.0 * B * elems, B * (2 * SSM_STATE_BYTES * elems + io),
                       "bf16", name="mamba_selective_state_update")

    def sublayer_ops(self, s: Shape, kind: str, decode_only: bool) -> list:
        """One hybrid layer of ``kind`` on this GPU: pre-norm, body, TP all-reduce, residual."""
        m = self.model
        T = s.prefill_tokens + s.decode_seqs
        ctx = self._ctx(T)
        e, h = ctx.act_bytes, m.hidden
        if kind == _mamba.MAMBA:
            body = self.mamba_ops(s)
        elif kind == _mamba.ATTENTION:
            kvh, lh, d = ctx.local_kv_heads, ctx.local_heads, m.head_dim
            body = [self._gemm(T, (lh + 2 * kvh) * d, h, "qkv"),
                    *([mem(ctx, "elementwise", 2 * e * T * (lh + kvh) * d, "rope")] if m.rope else []),
                    mem(ctx, "elementwise", 2 * T * kvh * d * (e + self.kv_bytes), "kv_write"),
                    *self.attention_ops_of(s, False),
                    self._gemm(T, h, lh * d, "attn_proj")]
        elif kind == _mamba.MOE:
            body = self._experts(T, T, decode_only)
        else:
            body = self._dense_mlp(T)
        return [mem(ctx, "norm", 2 * e * T * h, "input_norm"), *body,
                *tp_comm(ctx, "all_reduce", f"tp_{NAMES[kind]}_out"),
                mem(ctx, "elementwise", 3 * e * T * h, "residual_add")]

    def layer_ops_at(self, s: Shape, i: int, T_all: int | None = None) -> list:
        return self.sublayer_ops(s, self.model.hybrid_pattern[i], s.prefill_tokens == 0)

    def core_names(self, kind: str) -> tuple[str, ...]:
        """Kernels of a sub-layer that depend on more than the token count."""
        if kind == _mamba.MAMBA:
            return MAMBA_CORE
        if kind == _mamba.ATTENTION:
            return ("prefill_attn", "decode_attn")
        return ()


def state_blocks(state_bytes: float, block_bytes: float) -> int:
    """Blocks of the paged pool one sequence's fixed state takes: vLLM's hybrid cache
    manager gives Mamba layers pages of the attention layers' page size (it raises the
    attention block size to match, HybridAttentionMambaModelConfig), one per Mamba layer
    group and running sequence; here the state is rounded up to whole attention blocks."""
    return math.ceil(state_bytes / block_bytes) if state_bytes else 0
