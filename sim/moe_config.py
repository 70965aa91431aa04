"""``workload.moe``: how a mixture-of-experts model's tokens travel and spread
(contract shared with sim/scenario.py; docs/moe.md).

- ``dispatcher``: ``alltoall`` (NCCL all-to-all over the EP group), ``allgather``
  (all-gather the EP group's tokens, reduce-scatter the outputs) or ``deepep``
  (hierarchical: one RDMA copy per destination node, then NVLink forwarding) or
  ``hybridep`` (training: HybridEP, Megatron-Core's flex dispatcher with the hybridep
  backend: deepep's calls at HybridEP's published intranode bandwidth, on
  ``hybridep_sms`` SMs, Megatron-Core ``moe_hybridep_num_sms``, default 16).
- ``imbalance``: ``uniform``, ``{kind: zipf, exponent: 1.2}`` or
  ``{kind: histogram, file: tokens_per_expert.csv}`` (one count per expert, one per line
  or a ``tokens`` column); ``seed`` places a Zipf law's popular experts, ``placements``
  averages that many independent placements (one per MoE layer).
- ``capacity_factor``: null = dropless; a number caps each expert at that multiple of
  its balanced load (dropped tokens skip the experts).
- ``overlap``: hide the dispatch/combine of one microbatch behind another's compute
  (Megatron-Core's 1F1B all-to-all overlap).
- ``fused_mlp``: the experts' fc1, activation, fc2 and biases run as Transformer
  Engine's fused grouped MLP (Megatron-Core ``use_transformer_engine_op_fuser``); without
  it a model with biases adds each expert's fc2 bias, weighted by its routing
  probability, in PyTorch after the grouped GEMM (docs/moe.md).
- ``dispatch_dtype``: what the dispatch carries: ``bf16`` or ``fp8`` (1x128-block scaled,
  DeepSeek-V3's and SGLang's DeepEP dispatch); combines stay 16-bit. Unset: ``fp8`` when
  serving an FP8 model with ``deepep`` (SGLang quantizes before DeepEP's dispatch),
  ``bf16`` otherwise (Megatron-Core dispatches the 16-bit activations).
- ``deepep_mode``: DeepEP's ``normal`` kernels, its ``low_latency`` ones, or ``auto``:
  low-latency for serving iterations that only decode, normal otherwise (SGLang's rule).
- ``router_dtype`` (training): the router's GEMM, scores and probabilities in ``bf16``,
  ``fp32`` or ``fp64`` (Megatron-Core ``moe_router_dtype``; unset: the activations' 16-bit
  type). A wider router casts its input up, and the all-gather dispatcher carries the
  probabilities and its combine in that type (docs/moe.md).
- ``freeze_router`` (training): the router's weights take no gradient (NeMo RL
  ``freeze_moe_router``): no weight-gradient GEMM.
- ``permute_fusion`` (training): Transformer Engine's fused permute / unpermute kernels
  (Megatron-Core ``moe_permute_fusion``, default on); off, PyTorch's ``masked_select``,
  ``index_select`` and ``scatter_add_`` do it, with two more host synchronizations per MoE
  layer forward and more memory passes.
- ``router_fusion`` (training): Transformer Engine's fused top-k / score-function and
  aux-loss kernels (Megatron-Core ``moe_router_fusion``, default off); off, the router's
  top-k, softmax and routing-map scatters are PyTorch ops the host issues one by one.
- ``aux_loss`` (training): the load-balancing loss is computed (Megatron-Core
  ``moe_router_load_balancing_type`` aux_loss with ``moe_aux_loss_coeff`` > 0; its default
  coefficient is 0): its kernels run in every MoE layer's forward and backward.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hw_models.errors import ClusterSimError
from workloads.moe_load import Routing


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Imbalance(_Cfg):
    kind: Literal["uniform", "zipf", "histogram"] = Field("uniform", description=(
        "routing distribution over experts: uniform, zipf (exponent) or a measured histogram"))
    exponent: float | None = Field(default=None, gt=0, description=(
        "zipf: share of the i-th most popular expert proportional to 1 / i^exponent"))
    file: str | None = Field(None, description=(
        "histogram: CSV with one token count per expert (a tokens column or one per line)"))
    placements: int = Field(1, ge=1, description=(
        "zipf: independent placements of the popular experts averaged, one per MoE layer "
        "(each layer's router ranks its experts independently); 1: one for every layer"))

    @model_validator(mode="after")
    def _fields(self) -> Imbalance:
        if self.kind == "zipf" and self.exponent is None:
            raise ValueError("kind zipf needs exponent (e.g. 1.0)")
        if self.kind == "histogram" and not self.file:
            raise ValueError("kind histogram needs file (one token count per expert)")
        return self


class MoEWorkload(_Cfg):
    dispatcher: Literal["alltoall", "allgather", "deepep", "hybridep"] = Field("alltoall", description=(
        "token dispatch: NCCL all-to-all, all-gather + reduce-scatter, DeepEP-style "
        "hierarchical (RDMA once per node, then NVLink), or hybridep (training: HybridEP, "
        "deepep's calls at its published intranode bandwidth)"))
    hybridep_sms: int = Field(16, gt=0, description=(
        "hybridep: SMs its kernels hold (Megatron-Core moe_hybridep_num_sms, default 16)"))
    imbalance: Literal["uniform"] | Imbalance = Field("uniform", description=(
        "expert load: uniform or {kind: zipf, exponent} or {kind: histogram, file}"))
    capacity_factor: float | None = Field(default=None, gt=0, description=(
        "unset: dropless; a number caps each expert at that multiple of its balanced load"))
    overlap: bool = Field(False, description=(
        "hide dispatch/combine behind compute (1F1B all-to-all overlap; two-batch overlap "
        "in serving)"))
    seed: int = Field(0, ge=0, description="seed of the permutation that places a Zipf law's popular experts")
    fused_mlp: bool = Field(False, description=(
        "training: experts' fc1, activation, fc2 and biases in Transformer Engine's fused "
        "grouped MLP (Megatron-Core use_transformer_engine_op_fuser); off: the fc2 bias is "
        "added per expert in PyTorch (serving ignores it)"))
    dispatch_dtype: Literal["bf16", "fp8"] | None = Field(None, description=(
        "dispatch payload: bf16 or fp8 (1x128 block scales); unset: fp8 when serving an FP8 "
        "model with deepep, bf16 otherwise"))
    deepep_mode: Literal["auto", "normal", "low_latency"] = Field("auto", description=(
        "deepep kernels: normal, low_latency, or auto (low-latency for decode-only serving "
        "iterations, normal otherwise)"))

    router_dtype: Literal["bf16", "fp32", "fp64"] | None = Field(None, description=(
        "training: the router's GEMM, scores and probabilities (Megatron-Core "
        "moe_router_dtype); unset: the activations' 16-bit type"))
    freeze_router: bool = Field(False, description=(
        "training: router weights frozen (NeMo RL freeze_moe_router): no weight-gradient GEMM"))
    permute_fusion: bool = Field(True, description=(
        "training: Transformer Engine's fused token permute / unpermute (Megatron-Core "
        "moe_permute_fusion); off: PyTorch masked_select / index_select / scatter_add, two more "
        "host syncs per MoE layer forward"))
    router_fusion: bool = Field(False, description=(
        "training: Transformer Engine's fused router top-k and aux-loss kernels (Megatron-Core "
        "moe_router_fusion, default off); off: PyTorch's top-k, softmax and scatters"))
    aux_loss: bool = Field(False, description=(
        "training: the router's load-balancing loss is computed (Megatron-Core aux_loss with "
        "moe_aux_loss_coeff > 0; default coefficient 0)"))

    def wire_dtype(self, serving_fp8: bool = False) -> str:
        """The dispatch payload this configuration sends (``dispatch_dtype`` or its default)."""
        if self.dispatch_dtype is not None:
            return self.dispatch_dtype
        return "fp8" if serving_fp8 and self.dispatcher == "deepep" else "bf16"

    def routing(self, base: Path | None = None) -> Routing:
        imb = self.imbalance if isinstance(self.imbalance, Imbalance) else Imbalance()
        hist = read_histogram(imb.file, base) if imb.kind == "histogram" else None
        return Routing(imb.kind, imb.exponent or 0.0, hist, self.capacity_factor, self.seed,
                       imb.placements)


def read_histogram(file: str, base: Path | None = None) -> tuple[float, ...]:
    import pandas as pd
    path = Path(file)
    if not path.is_absolute() and base is not None and not path.exists():
        path = base / path
    if path.is_dir():
        raise ClusterSimError(f"workload.moe.imbalance.file: {file} is a directory; give a CSV "
                              "with one token count per expert")
    if not path.exists():
        raise ClusterSimError(f"workload.moe.imbalance.file: {file} does not exist")
    try:
        df = pd.read_csv(path, comment="#")
        col = df["tokens"] if "tokens" in df.columns else pd.read_csv(
            path, comment="#", header=None).iloc[:, 0]
        return tuple(float(x) for x in col)
    except (ValueError, KeyError, pd.errors.ParserError) as exc:
        raise ClusterSimError(f"workload.moe.imbalance.file: {file} is not a list of token "
                              f"counts ({exc})") from None
