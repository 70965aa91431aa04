"""Scenario schema of ``workload: kind: inference`` (LLM serving).

Contract from the project's inference issue; extend, don't rename. Everything a user
can get wrong is checked here or in ``workloads.inference.requests`` (which also holds the
``requests`` block's schema) and raises
ClusterSimError with one line (exit code 2 in the CLI).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sim.moe_config import MoEWorkload
from workloads.inference.requests import RequestsConfig

Policy = Literal["static", "orca", "vllm", "sarathi", "disaggregated"]
# Serving engines whose host work per sequence is measured (hw_models/data/engines.yaml).
EngineHost = Literal["none", "vllm-v0", "vllm-v1", "vllm-v1-async"]
# Engine samplers whose kernels per decode step are listed (hw_models/data/engines.yaml samplers).
Sampler = Literal["none", "vllm-v1-logprobs", "vllm-v1-raw-logprobs"]


# Replicas one serving run may play: each is a scheduler with its own queues and KV cache;
# 100,000 replicas of one GPU each is several times any cluster built.
MAX_REPLICAS = 100_000


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ReplicaParallel(_Cfg):
    tp: int = Field(1, gt=0, description="tensor-parallel size of one replica")
    pp: int = Field(1, gt=0, description="pipeline-parallel size of one replica")
    ep: int = Field(1, gt=0, description=(
        "MoE models: expert-parallel size; a replica spans ep x tp x pp GPUs with attention "
        "data-parallel over the ep GPUs (docs/moe.md)"))


class SchedulerConfig(_Cfg):
    policy: Policy = Field("vllm", description=(
        "batching policy: static, orca, vllm, sarathi or disaggregated"))
    max_batch: int = Field(256, gt=0, description=(
        "sequences per iteration (vLLM max_num_seqs)"))
    max_tokens: int = Field(8192, gt=0, description=(
        "tokens per iteration (vLLM max_num_batched_tokens)"))
    chunk_size: int = Field(512, gt=0, description="sarathi: token budget per iteration")


class KVCacheConfig(_Cfg):
    block_size: int = Field(16, gt=0, description="tokens per KV page (vLLM default 16)")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description=(
        "fraction of HBM the server may use, weights included (vLLM default 0.9)"))
    preemption: Literal["recompute", "swap"] = Field("recompute", description=(
        "a preempted sequence's KV cache is recomputed, or swapped to host memory (copies "
        "at 25 GB/s PCIe)"))
    blocks: int | None = Field(None, gt=0, description=(
        "KV blocks per replica; unset: what fits beside the weights"))


class Disaggregation(_Cfg):
    prefill_replicas: int = Field(1, gt=0, le=MAX_REPLICAS, description="replicas that only prefill")
    decode_replicas: int = Field(1, gt=0, le=MAX_REPLICAS, description="replicas that only decode")


class SLOConfig(_Cfg):
    ttft_ms: float = Field(500.0, gt=0, description="time-to-first-token target, ms")
    tpot_ms: float = Field(50.0, gt=0, description="time-per-output-token target, ms")


class InferenceWorkload(_Cfg):
    kind: Literal["inference"] = Field("inference", description=(
        "training (one iteration) or inference (a serving run)"))
    model: str | dict[str, Any] = Field("llama3-70b", description=(
        "model preset name (clustersim catalog models) or an inline model mapping; its "
        "seq_len is the context limit"))
    precision: Literal["fp16", "bf16", "fp8"] = Field("fp16", description=(
        "weights and KV cache at 2 (fp16, bf16) or 1 (fp8) bytes; activations 16-bit"))
    parallel: ReplicaParallel = Field(ReplicaParallel(), description=(
        "parallelism of one replica"))
    replicas: int = Field(1, gt=0, le=MAX_REPLICAS, description=(
        "model replicas serving requests (not with disaggregated)"))
    scheduler: SchedulerConfig = Field(SchedulerConfig(), description=(
        "batching policy and its limits"))
    kv_cache: KVCacheConfig = Field(KVCacheConfig(), description="the paged KV cache")
    disaggregation: Disaggregation = Field(Disaggregation(), description=(
        "disaggregated policy: prefill and decode replica pools"))
    router: Literal["round_robin", "least_outstanding"] = Field("round_robin", description=(
        "how new requests are spread over replicas (the KV hand-over of disaggregated "
        "always picks the least loaded decode replica)"))
    requests: RequestsConfig = Field(RequestsConfig(), description="the request stream")
    slo: SLOConfig = Field(SLOConfig(), description="latency targets for SLO attainment")
    moe: MoEWorkload = Field(MoEWorkload(), description=(
        "MoE models with parallel.ep: token dispatcher and all-to-all overlap (docs/moe.md)"))
    kernels: Literal["fused", "eager"] = Field("fused", description=(
        "fused: one kernel per operator (rotary, KV write, activation), as serving engines "
        "run; eager: one kernel per PyTorch operator of a plain implementation (13 per "
        "rotary call, docs/inference.md); dense models only"))
    engine_host: EngineHost = Field("none", description=(
        "host work between iterations per sequence in the batch (measured, "
        "hw_models/data/engines.yaml): none (iterations back to back), vllm-v1 (vLLM V1, "
        "synchronous scheduling: 21.5 us), vllm-v1-async (asynchronous scheduling: 0.625 "
        "us), vllm-v0 (vLLM V0: 100 us)"))
    enforce_eager: bool = Field(False, description=(
        "no CUDA graphs (vLLM enforce_eager): every kernel takes at least the host's "
        "launch interval (3.9 us, hw_models/data/engines.yaml)"))
    sampler: Sampler = Field("none", description=(
        "the engine's sampling kernels after the output layer, over every sampled row's "
        "vocabulary (hw_models/data/engines.yaml samplers): none, vllm-v1-logprobs (vLLM "
        "0.10-0.17 V1 sampler with temperature and logprobs=0: 54 bytes per logit in 8 "
        "kernels), vllm-v1-raw-logprobs (vLLM 0.9: 54 bytes in 9 kernels)"))
    replica_pools: list[str] | None = Field(None, description=(
        "pool of each replica on a cluster with pools (prefill replicas first under "
        "disaggregation)"))

    @property
    def replica_count(self) -> int:
        """Replicas actually used: with disaggregation, prefill + decode pools."""
        if self.scheduler.policy == "disaggregated":
            return self.disaggregation.prefill_replicas + self.disaggregation.decode_replicas
        return self.replicas
