"""FP8 (and FP4) training recipes: which GEMMs run in low precision, and the kernels each
recipe adds around them.

The recipes keep BF16 where NVIDIA Transformer Engine, Megatron-Core and torchao keep it:
attention (scores and context), norms, the output layer (logits), the embedding, the
optimizer (fp32 master weights) and the gradient reduction (fp32 main grads). The four
linear layers of a transformer block (QKV, attention projection, MLP up and down) run
their forward, input-gradient (dgrad) and weight-gradient (wgrad) GEMMs in the recipe's
format, on the profile's FP8 efficiency curve at the GPU's FP8 peak.

Extra memory-bound kernels per linear layer (bytes per element of the tensor cast;
q = 1 byte for FP8 / MXFP8, 0.5 for NVFP4):

* cast of the input X (forward) and of the output gradient dY (backward): read 2 bytes,
  write q, plus a transposed (Hopper: FP8 GEMMs are TN only) or column-wise-scaled
  (MXFP8, NVFP4) second copy for the backward GEMMs: write q more (fused cast-transpose).
* inputs produced by a norm or by the MLP activation (QKV, MLP up, MLP down) are written
  in FP8 by that kernel (TransformerEngine's LayerNormLinear / LayerNormMLP fusions): only
  the second copy (q) is extra - except under current scaling, whose scale needs the
  whole tensor's amax first, so the cast stays a separate pass, and NVFP4 (below).
* ``tensorwise`` (current scaling, torchao's default and Megatron's FP8-CS): an amax pass
  over X and dY before the cast (read 2 bytes). With ``fused_amax`` (torch.compile'd
  torchao Float8, as TorchTitan runs it: Inductor fuses the abs-max reduction into the
  norm / activation kernel that produces X) the inputs of QKV, MLP up and MLP down need
  no amax pass of their own; the cast pass remains (it needs the finished amax).
* ``delayed`` (TE's DelayedScaling): the scale comes from the amax history, amax is
  computed inside the cast kernel: no extra pass.
* weights are cast once per iteration and cached across microbatches (TE's
  ``is_first_microbatch``): not charged per microbatch.
* with sequence parallelism the all-gather in front of QKV and MLP-up moves the FP8 copy
  (q bytes per element instead of 2): TE's userbuffers and torchao's Float8 tensor
  parallelism gather the already-cast input.
* ``blockwise`` (1x128 activations, 128x128 weights; DeepSeek-V3 section 3.3) and
  ``mxfp8`` (32-element blocks with E8M0 scales, OCP MX spec): scales computed inside the
  cast kernel.
* ``nvfp4`` (16-element blocks, E4M3 scales; ``nvfp4_bytes``): Transformer Engine's
  NVFP4BlockScaling recipe (TE 2.12-2.16) quantizes X and dY with a random Hadamard
  transform (RHT) on the column-wise copy (the wgrad operand) and takes the global scale
  from the amax after the transform (``with_post_rht_amax``). With that quantizer the
  norm and the activation do not write NVFP4 themselves (normalization.cpp and
  activation.cpp ``Impl::UNFUSED``; layernorm_mlp.py "TODO: Fuse nvfp4 act"): they write
  BF16 and every input is quantized by its own kernels (quantizer.cpp
  ``NVFP4Quantizer::quantize_impl``): ``nvte_hadamard_transform_amax`` (read 2), then
  TE 2.14+ one kernel for the row-wise copy and the transformed column-wise copy
  (``nvte_quantize_with_hadamard_transform``: read 2, write 2 x (0.5 + 1/16 scale)),
  TE 2.12-2.13 two (``nvte_quantize_v2`` row-wise, ``nvte_hadamard_transform_cast_fusion_
  columnwise``: each reads the input, 2 bytes, and writes 0.5 + 1/16).

A recipe runs only on a GPU whose catalog ``peak_tflops`` has its format: ``fp8`` for
tensorwise/delayed/blockwise, ``mxfp8`` and ``nvfp4`` (Blackwell) for those.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from hw_models.errors import ClusterSimError
from workloads.graph import Collective, CommGroup, Compute

Recipe = Literal["tensorwise", "delayed", "blockwise", "mxfp8", "nvfp4"]

GEMM_DTYPE: dict[str, str] = {"tensorwise": "fp8", "delayed": "fp8", "blockwise": "fp8",
                              "mxfp8": "mxfp8", "nvfp4": "nvfp4"}
ELEMENT_BYTES: dict[str, float] = {"fp8": 1.0, "mxfp8": 1.0, "nvfp4": 0.5}
LINEAR = ("qkv", "attn_proj", "mlp_up", "mlp_down")
# MoE / MLA layers (workloads/moe_layers.py): Transformer Engine runs them as FP8 linears
# too (Megatron-Core's TEGroupedMLP and shared-expert / MLA TE linears inside fp8_autocast),
# the Mamba mixer's in_proj / out_proj (TE linears; its scan stays 16-bit) and LatentMoE's
# fc1_latent_proj / fc2_latent_proj (TELinear, moe_layer.py; their inputs, the norm's output
# that the router also reads and the unpermuted tokens, are cast by their own kernels).
# DeepSeek-V4's query and KV projections likewise (workloads/layer_dsv4.py; its compressors,
# indexer, grouped output down-projection and hyper-connection mixing stay 16-bit).
# Longer names first: ``_linear`` matches by prefix.
MOE_LINEAR = ("expert_fc1", "expert_fc2", "shared_fc1", "shared_fc2", "mla_q_down", "mla_q_up",
              "mla_kv_down", "mla_kv_up", "mla_q", "mamba_in_proj", "mamba_out_proj",
              "fc1_latent_proj", "fc2_latent_proj", "dsv4_q_down", "dsv4_q_up", "dsv4_kv_proj")


def check_support(recipe: str, peak_dtypes: list[str], gpu_name: str) -> None:
    need = GEMM_DTYPE[recipe]
    if need not in peak_dtypes:
        raise ClusterSimError(
            f"fp8 recipe {recipe!r} needs {need} tensor cores, which a {gpu_name} lacks "
            f"(its dtypes: {', '.join(sorted(peak_dtypes))}); choose another recipe or GPU")


def _linear(name: str) -> str | None:
    for base in LINEAR + MOE_LINEAR:
        if name == base or name.startswith(base + "_"):
            return base
    return None


# X written in FP8 by the norm / activation (Mamba's in_proj: TE LayerNormColumnParallelLinear)
FUSED_INPUT = ("qkv", "mlp_up", "mlp_down", "mamba_in_proj")
# Recipes whose GroupedLinear quantizes each expert's split with its own kernel (TE 2.9-2.16
# split_quantize -> multi_tensor_quantize_impl, quantizers other than FP8 delayed scaling;
# NVFP4 has a fused split kernel from TE 2.12): see ``rewrite``.
SPLIT_QUANTIZE = ("tensorwise", "blockwise", "mxfp8")
# Kernels of one current-scaling quantize in TE's C++ (transformer_engine/pytorch/csrc/
# quantizer.cpp Float8CurrentScalingQuantizer::quantize_impl, TE 2.9-2.16): nvte_compute_amax,
# nvte_compute_scale_from_amax, nvte_quantize_v2 (an expert's split has no amax reduction).
CURRENT_SCALING_KERNELS = 3
NVFP4_SCALE_BYTES = 1 / 16       # one E4M3 scale per 16 elements, per quantized copy


# Bytes per element of one quantized copy (row-wise or column-wise) as Transformer Engine's
# all-gathers move it: the data and its scales (transformer_engine/pytorch/distributed.py
# ``_all_gather_mxfp8`` / ``_start_all_gather_fp8_blockwise`` / ``_all_gather_nvfp4``, TE
# 2.9-2.16: one all_gather_into_tensor for the data and one for the scales per usage).
# MXFP8: an E8M0 scale per 32 elements; blockwise: an fp32 scale per 128 (1x128 tiles);
# NVFP4: an E4M3 scale per 16. FP8 delayed and current scaling gather the row-wise data
# alone (``supports_only_rowwise_all_gather``; the transpose is made after the gather),
# whatever usages the GEMMs need: one byte.
QUANTIZED_COPY_BYTES: dict[str, float] = {"mxfp8": 1 + 1 / 32, "blockwise": 1 + 4 / 128,
                                          "nvfp4": ELEMENT_BYTES["nvfp4"] + NVFP4_SCALE_BYTES}
# Recipes whose TE quantizer reduces its amax over the TP group with sequence parallelism
# (``_customize_quantizers_float8_current_scaling`` / ``_customize_quantizers_nvfp4`` in
# linear.py / layernorm_linear.py / layernorm_mlp.py, TE 2.9-2.16): the column-parallel
# linears' inputs and the row-parallel linears' output gradients. quantizer.cpp: current
# scaling all-reduces one fp32 amax (``allreduce(...)->wait()``), NVFP4 its row-wise and
# column-wise (post-RHT) amaxes together (``allreduce_coalesced(...)->wait()``); the
# compute stream waits for it before the scale and the cast.
AMAX_REDUCTION_BYTES: dict[str, float] = {"tensorwise": 4.0, "nvfp4": 8.0}
# Gathered GEMM inputs of the TP linears: forward inputs of the column-parallel ones,
# output gradients (gathered before their dgrad) of the row-parallel ones.
SP_GATHERED = ("qkv", "mlp_up", "attn_proj_dgrad", "mlp_down_dgrad")


def te_gather_bytes(recipe: str, usages: int) -> float:
    """Bytes per element of a TE all-gather of a tensor quantized by ``recipe`` with
    ``usages`` (1: row-wise or column-wise alone, 2: both) copies."""
    if recipe in QUANTIZED_COPY_BYTES:
        return usages * QUANTIZED_COPY_BYTES[recipe]
    return ELEMENT_BYTES[GEMM_DTYPE[recipe]]


def nvfp4_bytes(elements: float, fused_rht_cast: bool = True) -> float:
    """HBM bytes of Transformer Engine's NVFP4 quantize of a BF16 tensor into its row-wise
    copy and its Hadamard-transformed column-wise copy (quantizer.cpp
    ``NVFP4Quantizer::quantize_impl``, TE 2.12-2.16): the post-transform amax pass reads
    it (2 bytes); the quantize reads it once (``fused_rht_cast``, TE 2.14+) or twice
    (TE 2.12-2.13) and writes two 4-bit copies with their scales."""
    reads = 2 if fused_rht_cast else 3
    return elements * (2 * reads + 2 * QUANTIZED_COPY_BYTES["nvfp4"])


def _amax_pass_bytes(recipe: str, elements: float, fused: bool, fused_amax: bool) -> float:
    """Current scaling's amax pass over the 16-bit tensor before its cast (read 2 bytes an
    element); none where the producer computes the amax (``fused_amax`` on a fused input)
    and for the other recipes, whose scales need no pass of their own."""
    if recipe == "tensorwise" and not (fused and fused_amax):
        return elements * 2
    return 0.0


def _cast(op: Compute, recipe: str, elements: float, tag: str, fused: bool = False,
          fused_amax: bool = False, fused_rht_cast: bool = True) -> Compute:
    q = ELEMENT_BYTES[GEMM_DTYPE[recipe]]
    if recipe == "nvfp4":                         # no producer fusion; amax, RHT in the cast
        return Compute("elementwise", 0.0, nvfp4_bytes(elements, fused_rht_cast), "bf16",
                       name=f"{op.name}_{recipe}_cast_{tag}")
    if fused and recipe != "tensorwise":
        nbytes = elements * q                     # the producer writes FP8; the second copy
    else:
        nbytes = elements * (2 + 2 * q)           # read 16-bit, write cast + transposed copy
    nbytes += _amax_pass_bytes(recipe, elements, fused, fused_amax)
    return Compute("elementwise", 0.0, nbytes, "bf16", name=f"{op.name}_{recipe}_cast_{tag}")


def _shard_cast(op: Compute, recipe: str, elements: float, tp: int, tag: str,
                fused: bool = False, fused_amax: bool = False,
                fused_rht_cast: bool = True) -> Compute:
    """The cast of a GEMM input that Transformer Engine all-gathers under sequence
    parallelism: quantized on the rank's shard (``elements`` / ``tp``) before the gather
    (distributed.py ``gather_along_first_dim`` with a quantizer: ``_all_gather_fp8``
    quantizes ``inp`` then gathers ``out._data``; ``_all_gather_mxfp8`` /
    ``_start_all_gather_fp8_blockwise`` / ``_all_gather_nvfp4`` likewise, TE 2.9-2.16).
    MXFP8, blockwise and NVFP4 quantize the shard into every copy the GEMMs use. FP8
    delayed and current scaling quantize the row-wise copy alone (the transpose cannot be
    gathered: "we cannot directly gather the transposed fp8 tensor") and transpose the
    gathered tensor afterwards (``out._create_transpose()``: read and write one byte an
    element of the whole tensor), as the transposed copy is priced without the gather."""
    if recipe not in ("delayed", "tensorwise"):
        return _cast(op, recipe, elements / tp, tag, fused, fused_amax, fused_rht_cast)
    q = ELEMENT_BYTES[GEMM_DTYPE[recipe]]
    shard = elements / tp
    nbytes = 0.0 if fused and recipe != "tensorwise" else shard * (2 + q)  # row-wise cast
    nbytes += _amax_pass_bytes(recipe, shard, fused, fused_amax)
    nbytes += elements * 2 * q                    # transpose of the gathered row-wise copy
    return Compute("elementwise", 0.0, nbytes, "bf16", name=f"{op.name}_{recipe}_cast_{tag}")


def _grad_gather(op: Collective, recipe: str, act_bytes: int, ring: bool) -> Collective:
    """A row-parallel linear's output gradient all-gathered as TE does before its dgrad
    (module/base.py ``grad_output_preprocess``, TE 2.9-2.16): quantized on the shard and
    gathered with both usages by NCCL (``gather_along_first_dim(grad_output, quantizer=
    quantizer)``; the quantizer's usage is row-wise and column-wise), the row-wise copy
    alone under userbuffers (``ub_overlap_ag``: "Userbuffers only supports communication
    for one tensor usage at a time")."""
    per_elem = te_gather_bytes(recipe, 1 if ring else 2)
    return replace(op, bytes=op.bytes * per_elem / act_bytes)


def rewrite(ops: list, recipe: str, fused_amax: bool = False,
            fused_rht_cast: bool = True, amax_group: CommGroup | None = None,
            te_gathers: bool = False, ring: bool = False, act_bytes: int = 2) -> list:
    """The ops of a layer with its linear GEMMs in the recipe's format and their casts.
    Forward GEMM (m, n, k) = X(m,k) W(k,n): casts X. A dgrad (m, k, n) casts dY (m, n)
    for itself and the wgrad, which then needs no cast of its own.

    The E/ep GEMMs of a MoE layer's local experts (the same op repeated, forward or
    interleaved dgrad / wgrad) are Transformer Engine's GroupedLinear, which quantizes its
    input (forward) and output gradient (backward) split by expert with ``split_quantize``
    (transformer_engine/pytorch/csrc/extensions/cast.cpp, TE 2.9-2.16):
    ``multi_tensor_quantize_impl`` has one fused multi-tensor kernel for FP8 delayed
    scaling only ("Currently only have fused kernel for FP8 delayed scaling"), and NVFP4
    (TE 2.12+) its fused split kernel; MXFP8, blockwise and current-scaling quantizers
    quantize each expert's split with its own kernel. So those recipes get one cast per
    local expert, delayed scaling and NVFP4 one for all of them.

    ``te_gathers``: the TP all-gathers move TE's quantized copies with their scales
    (``te_gather_bytes``): the forward inputs' row-wise copy, and the row-parallel
    linears' output gradients (``_grad_gather``; ``ring``: under userbuffers), each cast
    on the rank's shard before its gather (``_shard_cast``); without it
    (torchao) the input gathers move ``q`` bytes an element and the gradients stay 16-bit. With
    ``amax_group`` (sequence parallelism under TE) current scaling and NVFP4 all-reduce
    the amax of each gathered input and output gradient over the TP group before it is
    cast and gathered (``AMAX_REDUCTION_BYTES``)."""
    dtype = GEMM_DTYPE[recipe]
    out: list = []
    q = ELEMENT_BYTES[dtype]
    low: dict[int, Compute] = {}                  # one low-precision copy per repeated op
    casts: dict[int, list] = {}  # index in out -> [op, elements, tag, fused, fused_amax, splits]
    run: tuple[int, int] | None = None            # (id of the op whose cast is out[idx], idx)
    gathered: dict[int, int] = {}  # index in ops of a GEMM whose input TE gathers -> TP size
    for i, op in enumerate(ops):
        nxt = ops[i + 1] if i + 1 < len(ops) else None
        if isinstance(op, Collective) and op.kind == "all_gather" and op.group.dim == "tp" \
                and isinstance(nxt, Compute) and nxt.name in SP_GATHERED:
            if te_gathers:
                gathered[i + 1] = op.group.size
            if nxt.name in ("qkv", "mlp_up"):             # gathers the row-wise FP8 copy
                per_elem = te_gather_bytes(recipe, 1) if te_gathers else q
                op = replace(op, bytes=op.bytes * per_elem / act_bytes)
            elif te_gathers:
                op = _grad_gather(op, recipe, act_bytes, ring)
            if amax_group is not None and recipe in AMAX_REDUCTION_BYTES:
                out.append(Collective("all_reduce", AMAX_REDUCTION_BYTES[recipe], amax_group,
                                      name=f"{nxt.name}_amax_all_reduce"))
        base = _linear(op.name) if isinstance(op, Compute) and op.op_class == "gemm" else None
        if base is None:
            out.append(op)
            run = None
            continue
        m, n, k = op.shape
        if op.name == base or op.name.endswith("_dgrad"):
            if run is not None and run[0] == id(op):      # another local expert's GEMM
                casts[run[1]][1] += m * k
                casts[run[1]][5] += 1
            else:                                         # dgrad (m, k, n): dY is (m, n)
                fwd = op.name == base
                casts[len(out)] = [op, m * k, "input" if fwd else "grad", fwd and base in FUSED_INPUT,
                                   fwd and fused_amax, 1, gathered.get(i, 1)]
                run = (id(op), len(out))
                out.append(None)                          # the cast, priced below
        low.setdefault(id(op), replace(op, dtype=dtype))
        out.append(low[id(op)])
    for idx, item in casts.items():
        out[idx] = _casts(item, recipe, fused_rht_cast)
    return [o for item in out for o in (item if isinstance(item, list) else (item,))]


def _casts(item: list, recipe: str, fused_rht_cast: bool) -> list:
    """The cast kernels of one GEMM's input: one per local expert's split where the
    recipe quantizes splits one by one, on the shard where TE gathers the result."""
    op, elements, tag, fused, amax, splits, tp = item
    n = splits if recipe in SPLIT_QUANTIZE else 1
    if tp > 1 and n == 1:                         # TE quantizes the shard it gathers
        cast = _shard_cast(op, recipe, elements, tp, tag, fused, fused_amax=amax,
                           fused_rht_cast=fused_rht_cast)
    else:
        cast = _cast(op, recipe, elements / n, tag, fused, fused_amax=amax,
                     fused_rht_cast=fused_rht_cast)
    if n > 1 and recipe == "tensorwise":
        cast = replace(cast, host_ops=CURRENT_SCALING_KERNELS)
    return [cast] * n
