"""Scenario schema of ``workload: kind: inference`` (LLM serving).

Contract from the project's inference issue; extend, don't rename. Everything a user
can get wrong is checked here or in ``workloads.inference.requests`` and raises
ClusterSimError with one line (exit code 2 in the CLI).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class LengthDist(_Cfg):
    """lognormal: median and sigma (of log); uniform: low..high; zipf: a (>1), low, high."""
    dist: Literal["lognormal", "uniform", "zipf"]
    median: float | None = Field(None, gt=0)
    sigma: float = Field(1.0, gt=0)
    low: int = Field(1, gt=0)
    high: int | None = Field(None, gt=0)
    a: float = Field(1.5, gt=1)

    @model_validator(mode="after")
    def _need(self) -> LengthDist:
        if self.dist == "lognormal" and self.median is None:
            raise ValueError("lognormal needs median")
        if self.dist in ("uniform", "zipf") and self.high is None:
            raise ValueError(f"{self.dist} needs high")
        if self.high is not None and self.high < self.low:
            raise ValueError(f"high {self.high} < low {self.low}")
        return self


Length = int | LengthDist


class RequestsConfig(_Cfg):
    count: int = Field(1000, gt=0)
    arrival: Literal["burst", "poisson", "trace"] = "poisson"
    rate_per_s: float = Field(5.0, gt=0)
    prompt_len: Length = 512
    output_len: Length = 128
    trace: str | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _positive(self) -> RequestsConfig:
        for k in ("prompt_len", "output_len"):
            v = getattr(self, k)
            if isinstance(v, int) and v <= 0:
                raise ValueError(f"{k} must be > 0")
        if self.arrival == "trace" and not self.trace:
            raise ValueError("arrival: trace needs requests.trace (a CSV with arrival_s, "
                             "prompt_len, output_len)")
        return self


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
    replica_pools: list[str] | None = Field(None, description=(
        "pool of each replica on a cluster with pools (prefill replicas first under "
        "disaggregation)"))

    @property
    def replica_count(self) -> int:
        """Replicas actually used: with disaggregation, prefill + decode pools."""
        if self.scheduler.policy == "disaggregated":
            return self.disaggregation.prefill_replicas + self.disaggregation.decode_replicas
        return self.replicas
