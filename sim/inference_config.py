"""Scenario schema of ``workload: kind: inference`` (LLM serving).

Contract from the project's inference issue; extend, don't rename. Everything a user
can get wrong is checked here or in ``workloads.inference.requests`` (which also holds the
``requests`` block's schema) and raises
ClusterSimError with one line (exit code 2 in the CLI).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workloads.inference.requests import RequestsConfig

Policy = Literal["static", "orca", "vllm", "sarathi", "disaggregated"]


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReplicaParallel(_Cfg):
    tp: int = Field(1, gt=0)
    pp: int = Field(1, gt=0)


class SchedulerConfig(_Cfg):
    policy: Policy = "vllm"
    max_batch: int = Field(256, gt=0)          # sequences per iteration (vLLM max_num_seqs)
    max_tokens: int = Field(8192, gt=0)        # tokens per iteration (max_num_batched_tokens)
    chunk_size: int = Field(512, gt=0)         # Sarathi token budget per iteration


class KVCacheConfig(_Cfg):
    block_size: int = Field(16, gt=0)          # tokens per page (vLLM default 16)
    # Fraction of HBM the server may use (vLLM's gpu_memory_utilization default 0.9).
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    preemption: Literal["recompute", "swap"] = "recompute"
    blocks: int | None = Field(None, gt=0)     # override: KV blocks per replica


class Disaggregation(_Cfg):
    prefill_replicas: int = Field(1, gt=0)
    decode_replicas: int = Field(1, gt=0)


class SLOConfig(_Cfg):
    ttft_ms: float = Field(500.0, gt=0)
    tpot_ms: float = Field(50.0, gt=0)


class InferenceWorkload(_Cfg):
    kind: Literal["inference"] = "inference"
    model: str | dict[str, Any] = "llama3-70b"
    precision: Literal["fp16", "bf16", "fp8"] = "fp16"
    parallel: ReplicaParallel = ReplicaParallel()
    replicas: int = Field(1, gt=0)
    scheduler: SchedulerConfig = SchedulerConfig()
    kv_cache: KVCacheConfig = KVCacheConfig()
    disaggregation: Disaggregation = Disaggregation()
    router: Literal["round_robin", "least_outstanding"] = "round_robin"
    requests: RequestsConfig = RequestsConfig()
    slo: SLOConfig = SLOConfig()

    @property
    def replica_count(self) -> int:
        """Replicas actually used: with disaggregation, prefill + decode pools."""
        if self.scheduler.policy == "disaggregated":
            return self.disaggregation.prefill_replicas + self.disaggregation.decode_replicas
        return self.replicas
