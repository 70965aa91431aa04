"""Scenario keys of long context, pipeline schedules, FP8 recipes and offload
(docs/long_context.md, docs/schedules.md, docs/fp8.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Fp8Config(_Cfg):
    """``precision: fp8`` recipe. ``params``: FP8 weights (TE fp8 primary weights), so the
    ZeRO/FSDP parameter all-gather moves 1 byte per parameter."""
    recipe: Literal["tensorwise", "delayed", "blockwise", "mxfp8", "nvfp4"] = Field(
        "delayed", description=(
            "tensorwise (current scaling), delayed (amax history), blockwise (1x128 / "
            "128x128), mxfp8 and nvfp4 (Blackwell block scaling)"))
    params: bool = Field(False, description="FP8 weights and FP8 parameter all-gather")
    fused_amax: bool = Field(False, description=(
        "tensorwise: the amax of an input made by a norm or the MLP activation is reduced "
        "inside that kernel (torch.compile'd torchao Float8, as TorchTitan runs it), so "
        "only the cast pass remains"))
    tp_all_gather: bool = Field(False, description=(
        "tensorwise: the TP all-gathers of the FP8 linears' inputs (forward) and of their "
        "output gradients (backward) move FP8, cast on the shard first (torchao's "
        "Float8ColwiseParallel / Float8RowwiseParallel / PrepareFloat8ModuleInput, as "
        "TorchTitan applies them); reduce-scatters stay 16-bit"))
    fused_rht_cast: bool = Field(True, description=(
        "nvfp4: the row-wise copy and the Hadamard-transformed column-wise copy are "
        "quantized by one kernel that reads the input once (Transformer Engine 2.14+, "
        "nvte_quantize_with_hadamard_transform); false: two kernels, each reading it "
        "(TE 2.12-2.13)"))
    dot_product_attention: bool = Field(False, description=(
        "FP8 attention (Transformer Engine fp8_dpa through cuDNN): the kernels take the "
        "16-bit kernels' time, but the backward of a sliding-window layer computes every "
        "causal query-key pair (cuDNN's FP8 backward does not skip the blocks outside the "
        "window; docs/moe.md)"))

    @model_validator(mode="after")
    def _tp_all_gather_is_tensorwise(self) -> Fp8Config:
        if self.tp_all_gather and self.recipe != "tensorwise":
            raise ValueError(f"tp_all_gather applies to recipe tensorwise, not {self.recipe!r}")
        return self

    @model_validator(mode="after")
    def _fused_rht_cast_is_nvfp4(self) -> Fp8Config:
        if not self.fused_rht_cast and self.recipe != "nvfp4":
            raise ValueError(f"fused_rht_cast applies to recipe nvfp4, not {self.recipe!r}")
        return self

    @model_validator(mode="after")
    def _fused_amax_is_tensorwise(self) -> Fp8Config:
        if self.fused_amax and self.recipe != "tensorwise":
            raise ValueError(f"fused_amax applies to recipe tensorwise (current scaling), not "
                             f"{self.recipe!r}, whose scale needs no amax pass")
        return self


OffloadModule = Literal["attn_norm", "qkv_linear", "core_attn", "attn_proj", "mlp_norm",
                        "expert_fc1", "moe_act"]


class OffloadConfig(_Cfg):
    """Host offload over the system's host link: ``activations`` is the fraction of each
    stage's layers whose stored activations go to host memory after the forward and
    come back before the backward; ``modules`` names the modules whose stored inputs do
    (Megatron-Core's fine-grained activation offloading); ``optimizer`` keeps optimizer
    states on the host (Adam on the CPU); ``optimizer_states`` parks them there between
    steps (Adam on the GPU)."""
    activations: float = Field(0.0, ge=0.0, le=1.0, description=(
        "fraction of stored activations copied to host after the forward, back before "
        "the backward"))
    modules: list[OffloadModule] = Field([], description=(
        "Megatron-Core's fine-grained activation offloading (--offload-modules): the stored "
        "inputs of these modules of every layer go to host memory after the forward and "
        "come back before the backward (docs/long_context.md)"))
    optimizer: bool = Field(False, description=(
        "optimizer states on the host; Adam runs on the CPU"))
    optimizer_states: bool = Field(False, description=(
        "Megatron-Core's offload_optimizer_states: master weights and Adam moments leave "
        "the GPU after the optimizer step and come back before the next one; Adam runs "
        "on the GPU"))

    @model_validator(mode="after")
    def _one_way_each(self) -> OffloadConfig:
        if self.modules and self.activations > 0:
            raise ValueError("offload.activations (a fraction of every layer) and "
                             "offload.modules (named modules) say the same thing two ways: "
                             "give one")
        if self.optimizer and self.optimizer_states:
            raise ValueError("offload.optimizer (Adam on the CPU) and offload.optimizer_states "
                             "(states parked on the host between steps) exclude each other")
        return self


Schedule = Literal["gpipe", "1f1b", "interleaved", "zb-h1", "zb-v", "dualpipe", "dualpipev"]
CPKind = Literal["ring", "allgather", "ulysses", "hybrid"]
TPOverlap = Literal["none", "ring", "async"]


def plan_kwargs(p, gpus_per_node: int) -> dict:
    """ParallelPlan fields of the keys above (``p``: the scenario's ParallelConfig)."""
    from hw_models.errors import ClusterSimError
    ulysses = p.ulysses_size
    if ulysses is not None and p.cp_kind != "hybrid":
        raise ClusterSimError(f"workload.parallel.ulysses_size applies to cp_kind: hybrid, not "
                              f"{p.cp_kind} (ulysses uses the whole CP group)")
    if p.cp_kind == "hybrid" and ulysses is None:   # Ulysses over the CP ranks of one node
        room = max(1, gpus_per_node // p.tp)
        ulysses = max(d for d in range(1, p.cp + 1) if p.cp % d == 0 and d <= room)
    if p.cp_compiled and p.cp_kind != "allgather":
        raise ClusterSimError(f"workload.parallel.cp_compiled applies to cp_kind: allgather "
                              f"(PyTorch's context_parallel), not {p.cp_kind}")
    if p.tp_comm_overlap != "none" and p.tp > 1 and not p.sequence_parallel:
        raise ClusterSimError("workload.parallel.tp_comm_overlap needs sequence_parallel: true "
                              "(Megatron-Core and TorchTitan overlap the SP all-gather / "
                              "reduce-scatter)")
    return {"cp": p.cp, "cp_kind": p.cp_kind, "ulysses_size": ulysses, "cp_compiled": p.cp_compiled,
            "embedding_in_split": p.account_for_embedding_in_pipeline_split,
            "loss_in_split": p.account_for_loss_in_pipeline_split,
            "tp_comm_overlap": p.tp_comm_overlap, "reshard_after_forward": p.reshard_after_forward,
            "prefetch": p.prefetch, "zero_shard_group": p.zero_shard_group}


def precision_options(w, gpu) -> dict:
    """TrainingOptions fields for the workload's precision: with ``precision: fp8`` the
    GEMM dtype stays bf16 and the recipe (workloads/fp8.py) moves the linear layers."""
    from hw_models.errors import ClusterSimError
    from workloads import fp8
    if w.fp8 is not None and w.precision != "fp8":
        raise ClusterSimError(f"workload.fp8 is set but precision is {w.precision!r}; "
                              "set precision: fp8 or remove workload.fp8")
    if w.parallel.cp > 1 and w.attention != "flash":
        raise ClusterSimError("workload.parallel.cp > 1 needs attention: flash (context "
                              "parallel attention is blockwise)")
    if w.precision != "fp8":
        return {"dtype": w.precision}
    cfg = w.fp8 or Fp8Config()
    if gpu is not None:        # pools: every pool's GPU is checked by its own dtype rule
        fp8.check_support(cfg.recipe, list(gpu.peak_tflops), gpu.name)
    return {"dtype": "bf16", "fp8_recipe": cfg.recipe, "param_bytes": 1 if cfg.params else 2,
            "fp8_fused_amax": cfg.fused_amax, "fp8_attention": cfg.dot_product_attention,
            "fp8_tp_gather": cfg.tp_all_gather, "fp8_fused_rht_cast": cfg.fused_rht_cast}


def offload_options(w, system, model, plan, flash: bool):
    """workloads.offload.OffloadOptions from ``workload.offload`` and the catalog's host
    link / host memory numbers."""
    from hw_models.errors import ClusterSimError
    from workloads import offload_modules
    from workloads.memory import activation_bytes_per_layer
    from workloads.offload import OffloadOptions
    cfg = w.offload
    if cfg is None or (cfg.activations == 0 and not cfg.optimizer and not cfg.modules
                       and not cfg.optimizer_states):
        return OffloadOptions()
    if system.gpu_spec.host_gb_s is None:
        raise ClusterSimError("workload.offload needs the GPU's host link (host_gb_s) in the catalog")
    if cfg.optimizer and system.host_mem_gb_s is None:
        raise ClusterSimError("workload.offload.optimizer needs the system's host_mem_gb_s "
                              "(host DRAM bandwidth) in the catalog")
    why = offload_modules.unsupported(model, plan.recompute, cfg.modules)
    if why:
        raise ClusterSimError(f"workload.{why}")
    local = model.with_seq_len(model.seq_len // plan.cp)
    per_layer = activation_bytes_per_layer(local, plan.micro_batch, plan.tp, plan.sp,
                                           plan.recompute, flash)
    host_bw = (system.host_mem_gb_s or 0) * 1e9 / system.gpus_per_node
    fraction, modules = cfg.activations, tuple(dict.fromkeys(cfg.modules))
    if modules and model.uniform:     # every layer alike: the modules' share of a layer
        fraction = offload_modules.module_bytes(local, 0, plan, 1.0, modules) / per_layer
        modules = ()
    return OffloadOptions(fraction, per_layer, cfg.optimizer, host_bw, modules,
                          cfg.optimizer_states)


def check_optimizer(w):
    """The optimizer keys of a training workload that exclude each other (ValueError);
    returns the workload."""
    off = w.offload
    if w.adam_moments == "bf16" and w.adam == "foreach":
        raise ValueError("adam_moments bf16 is Transformer Engine's FusedAdam "
                         "(adam: fused), not PyTorch's foreach AdamW")
    if w.optimizer != "muon":
        return w
    if w.parallel.zero >= 2:
        raise ValueError("optimizer muon runs with zero 0 or 1 (Megatron-Core's "
                         "layer-wise optimizer; no ZeRO-2/3 or FSDP with Muon)")
    if off is not None and off.optimizer:
        raise ValueError("optimizer muon runs on the GPU (offload.optimizer is Adam's)")
    if w.adam_moments != "fp32":
        raise ValueError("adam_moments applies to optimizer adam, not muon")
    if off is not None and off.optimizer_states:
        raise ValueError("offload.optimizer_states moves Adam's states (Megatron-Core's "
                         "OptimizerStateOffloader), not Muon's")
    return w
