"""Scenario schema of ``workload: kind: rl`` (one RL post-training step: GRPO, PPO, DAPO).

Contract from the project's RL issue; extend, don't rename. Everything a user can get
wrong in one block is checked here and raises ClusterSimError with one line (exit code 2
in the CLI); checks that need the cluster (GPU counts, memory) run in ``sim.rl``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sim.inference_config import EngineHost, KVCacheConfig, Sampler, SchedulerConfig
from sim.moe_config import MoEWorkload
from workloads.inference.requests import MAX_REQUESTS, Length

Precision = Literal["fp16", "bf16", "fp8"]


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RolloutParallel(_Cfg):
    """One rollout engine replica: tp x pp GPUs (vLLM tensor/pipeline parallel)."""
    tp: int = Field(1, gt=0, description="tensor-parallel GPUs of one rollout replica")
    pp: int = Field(1, gt=0, description="pipeline-parallel stages of one rollout replica")
    ep: int = Field(1, gt=0, description="expert parallelism of the rollout engine (MoE "
                    "policies; dense models need 1)")


class RolloutConfig(_Cfg):
    parallel: RolloutParallel = Field(RolloutParallel(), description="one rollout replica's layout")
    scheduler: SchedulerConfig = Field(SchedulerConfig(), description="batching policy and "
                                       "limits of the rollout engine (as inference scenarios)")
    kv_cache: KVCacheConfig = Field(KVCacheConfig(), description="paged KV cache of the "
                                    "rollout engine (as inference scenarios)")
    precision: Precision | None = Field(None, description="rollout weights and GEMMs "
                                        "(default: the training precision; fp8 rollouts)")
    oversample: float = Field(1.0, ge=1.0, description="DAPO dynamic sampling: generate "
                              "ceil(prompts_per_step x oversample) groups, keep the first "
                              "prompts_per_step to complete, abandon the rest")
    batch_multiplier: float = Field(1.0, ge=1.0, description="DAPO dynamic sampling as NeMo "
                                    "RL runs it (grpo.batch_multiplier): each generation batch "
                                    "is ceil(prompts_per_step x batch_multiplier) groups, "
                                    "generated to the last response; prompts_per_step of them "
                                    "are trained on")
    gen_batches: int = Field(1, ge=1, description="DAPO: generation batches per step until "
                             "enough groups with a reward spread are kept (NeMo RL: at most "
                             "dynamic_sampling_max_gen_batches); not published per run, so 1 "
                             "unless known")
    engine_host: EngineHost = Field(
        "vllm-v1", description="host work of the rollout engine per sequence per iteration: "
        "vllm-v1 (21.5 us; vLLM V1 with synchronous scheduling, as NeMo RL's vLLM 0.11 "
        "runs), vllm-v1-async (0.625 us; asynchronous scheduling, vLLM's default from "
        "2026), vllm-v0 (100 us) or none (hw_models/data/engines.yaml)")
    enforce_eager: bool = Field(False, description="vLLM enforce_eager: decode without CUDA "
                                "graphs, every kernel at least the host's launch interval")
    sampler: Sampler = Field("vllm-v1-logprobs", description="the rollout engine's sampling "
                             "kernels per decode step over each sequence's vocabulary: "
                             "vllm-v1-logprobs (vLLM 0.10-0.17 with logprobs=0, as NeMo RL "
                             "v0.4-v0.6 sample), vllm-v1-raw-logprobs (vLLM 0.9, NeMo RL "
                             "v0.3) or none (hw_models/data/engines.yaml samplers)")


class TrainParallel(_Cfg):
    """The training layout (Megatron-style); dp is what is left of the training GPUs."""
    tp: int = Field(1, gt=0, description="tensor parallel of the training layout")
    pp: int = Field(1, gt=0, description="pipeline parallel of the training layout")
    ep: int = Field(1, gt=0, description="expert parallel of the training layout (MoE "
                    "policies; passed to the training simulator)")
    cp: int = Field(1, gt=0, description="context parallel of the training layout (each "
                    "packed row split over cp GPUs; passed to the training simulator)")
    vpp: int = Field(1, gt=0, description="virtual pipeline stages (interleaved schedule)")
    sequence_parallel: bool = Field(False, description="Megatron sequence parallelism")
    schedule: Literal["gpipe", "1f1b", "interleaved"] = Field("1f1b", description="pipeline schedule")
    zero: Literal[0, 1, 2, 3] = Field(1, description="ZeRO stage; 1 = Megatron's distributed "
                                      "optimizer (NeMo RL's default)")
    pipeline_layers: list[int] | None = Field(None, description="layers per pipeline stage "
                                              "(uneven split); unset: layers / pp each")


class TrainConfig(_Cfg):
    global_batch: int = Field(512, gt=0, description="samples (responses) per optimizer step")
    micro_batch: int = Field(1, gt=0, description="packed rows per microbatch")
    parallel: TrainParallel = Field(TrainParallel(), description="training layout")
    recompute: Literal["none", "selective", "full"] = Field("selective", description=
                                                           "activation recomputation")
    attention: Literal["flash", "unfused"] = Field("flash", description="attention kernels")
    max_seq_len: int | None = Field(None, gt=0, description="pack prompt + response "
                                    "sequences into rows of this many tokens (first-fit "
                                    "decreasing); unset: pad each to the step's longest")
    epochs: int = Field(1, gt=0, description="passes over the step's samples (PPO epochs)")
    logprob_micro_batch: int | None = Field(None, gt=0, description="packed rows per "
                                            "microbatch of the forward-only passes (NeMo RL's "
                                            "policy.logprob_batch_size); unset: micro_batch")
    moe: MoEWorkload = Field(MoEWorkload(), description="MoE policies: token dispatcher, "
                             "expert-load imbalance, capacity factor and all-to-all overlap of "
                             "the log-prob and training passes (as training scenarios' "
                             "workload.moe, docs/moe.md)")
    overlap_param_gather: bool = Field(False, description="all-gather the updated parameters "
                                       "under the next forward (Megatron's distributed "
                                       "optimizer, overlap_param_gather)")
    grad_reduce_bytes: Literal[2, 4] | None = Field(None, description="bytes per gradient "
                                                    "element in the data-parallel reduction "
                                                    "(2: Megatron's grad_reduce_in_fp32 off); "
                                                    "unset: 4 for bf16 and fp8, else 2")
    grad_accumulation_fusion: bool = Field(True, description="weight-gradient GEMMs add into "
                                           "the main gradient themselves (Megatron's "
                                           "gradient_accumulation_fusion); false: a separate "
                                           "add per microbatch (as NeMo RL trains)")

    @property
    def logprob_rows(self) -> int:
        """Packed rows per microbatch of the forward-only passes."""
        return self.logprob_micro_batch or self.micro_batch


class PoolSplit(_Cfg):
    rollout_gpus: int | None = Field(None, gt=0, description="GPUs of the rollout pool (whole "
                                     "nodes or a divisor of one node); with rollout_pool: "
                                     "default the whole pool")
    train_gpus: int | None = Field(None, gt=0, description="GPUs of the training pool (whole "
                                   "nodes or a divisor of one node); with train_pool: default "
                                   "the whole pool")
    rollout_pool: str | None = Field(None, description="cluster.pools: the pool that generates")
    train_pool: str | None = Field(None, description="cluster.pools: the pool that trains")

    @model_validator(mode="after")
    def _check(self) -> PoolSplit:
        named = (self.rollout_pool is None, self.train_pool is None)
        if named[0] != named[1]:
            raise ValueError("placement: name both rollout_pool and train_pool, or neither")
        if named[0] and (self.rollout_gpus is None or self.train_gpus is None):
            raise ValueError("placement: give rollout_gpus and train_gpus (or, on a cluster "
                             "of pools, rollout_pool and train_pool)")
        return self

    @property
    def pooled(self) -> bool:
        return self.rollout_pool is not None


class RLWorkload(_Cfg):
    kind: Literal["rl"] = Field("rl", description="one RL post-training step (docs/rl.md)")
    algorithm: Literal["grpo", "ppo", "dapo"] = Field("grpo", description="grpo; ppo adds "
                                                      "critic and reward model; dapo drops the "
                                                      "reference pass and samples dynamically")
    model: str | dict[str, Any] = Field("llama3-8b", description="the policy: preset name or "
                                        "inline shape")
    critic_model: str | dict[str, Any] | None = Field(None, description="PPO critic (default: "
                                                      "the policy's shape)")
    reward_model: str | dict[str, Any] | None = Field(None, description="PPO reward model "
                                                      "(default: the policy's shape)")
    precision: Precision = Field("bf16", description="training precision")
    prompts_per_step: int = Field(64, gt=0, description="prompts per step")
    samples_per_prompt: int = Field(8, gt=0, description="responses per prompt (group size)")
    prompt_len: Length = Field(512, description="prompt tokens: a number or a distribution "
                               "(as inference requests)")
    response_len: Length = Field(1024, description="response tokens: a number or a "
                                 "distribution (as inference requests)")
    rollout: RolloutConfig = Field(RolloutConfig(), description="the rollout engine")
    train: TrainConfig = Field(TrainConfig(), description="log-prob and training passes")
    placement: Literal["colocated"] | PoolSplit = Field("colocated", description="colocated "
                                                        "(time-shared GPUs, onload/offload of "
                                                        "the training states) or separate pools")
    off_policy_steps: int = Field(0, ge=0, description="0 on-policy; k >= 1 overlaps rollout of "
                                  "step i+k with training of step i (separate pools); k >= 2 "
                                  "streams the rollouts across steps")
    sync: Literal["nccl", "broadcast", "checkpoint"] = Field("nccl", description=(
        "weight sync: nccl reshards (each rollout GPU receives its own shard); broadcast "
        "sends every full tensor to every rollout GPU (NeMo RL's default transport between "
        "separate pools); checkpoint goes through checkpoint storage"))
    seed: int = Field(0, ge=0, description="seed of the sampled prompt and response lengths")

    @model_validator(mode="after")
    def _check(self) -> RLWorkload:
        for k in ("prompt_len", "response_len"):
            v = getattr(self, k)
            if isinstance(v, int) and v <= 0:
                raise ValueError(f"{k} must be > 0")
        if self.samples > MAX_REQUESTS:
            raise ValueError(f"prompts_per_step x samples_per_prompt = {self.prompts_per_step:,} x "
                             f"{self.samples_per_prompt:,} = {self.samples:,} responses per step; "
                             f"the rollout simulates at most {MAX_REQUESTS:,}")
        if self.train.global_batch > self.samples:
            raise ValueError(f"train.global_batch {self.train.global_batch:,} is more than the "
                             f"{self.samples:,} responses of a step (prompts_per_step x "
                             "samples_per_prompt): no optimizer step would fill (NeMo RL's "
                             "trainer takes responses // global_batch steps); allowed: 1.."
                             f"{self.samples:,}")
        if self.rollout.oversample > 1 and self.algorithm != "dapo":
            raise ValueError(f"rollout.oversample {self.rollout.oversample} is dynamic sampling, "
                             "which only algorithm: dapo does; leave it at 1")
        r = self.rollout
        if (r.batch_multiplier > 1 or r.gen_batches > 1) and self.algorithm != "dapo":
            raise ValueError("rollout.batch_multiplier / rollout.gen_batches are dynamic "
                             "sampling, which only algorithm: dapo does; leave them at 1")
        if r.batch_multiplier > 1 and r.oversample > 1:
            raise ValueError("rollout.oversample (stop at the first complete groups) and "
                             "rollout.batch_multiplier (generate the whole batch) are two "
                             "models of one thing; set one of them")
        if (self.critic_model or self.reward_model) and self.algorithm != "ppo":
            raise ValueError("critic_model / reward_model are PPO's; algorithm is "
                             f"{self.algorithm!r}")
        return self

    @property
    def samples(self) -> int:
        """Responses the step trains on."""
        return self.prompts_per_step * self.samples_per_prompt

    @property
    def rollout_precision(self) -> str:
        return self.rollout.precision or self.precision

    @property
    def colocated(self) -> bool:
        return self.placement == "colocated"
