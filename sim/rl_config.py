"""Scenario schema of ``workload: kind: rl`` (one RL post-training step: GRPO, PPO, DAPO).

Contract from the project's RL issue; extend, don't rename. Everything a user can get
wrong in one block is checked here and raises ClusterSimError with one line (exit code 2
in the CLI); checks that need the cluster (GPU counts, memory) run in ``sim.rl``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sim.inference_config import KVCacheConfig, Length, SchedulerConfig

Precision = Literal["fp16", "bf16", "fp8"]


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RolloutParallel(_Cfg):
    """One rollout engine replica: tp x pp GPUs (vLLM tensor/pipeline parallel). ``ep`` is
    passed to the serving layer for MoE policies; dense models need ep = 1."""
    tp: int = Field(1, gt=0)
    pp: int = Field(1, gt=0)
    ep: int = Field(1, gt=0)


class RolloutConfig(_Cfg):
    parallel: RolloutParallel = RolloutParallel()
    scheduler: SchedulerConfig = SchedulerConfig()
    kv_cache: KVCacheConfig = KVCacheConfig()
    precision: Precision | None = None       # default: the training precision (fp8 rollouts)
    # DAPO dynamic sampling: groups generated = ceil(prompts_per_step x oversample); the step
    # goes on once prompts_per_step groups are complete and abandons the rest.
    oversample: float = Field(1.0, ge=1.0)


class TrainParallel(_Cfg):
    """The training layout (Megatron-style). ``ep`` passes through to the training layer
    for MoE policies; dp is what is left of the training GPUs."""
    tp: int = Field(1, gt=0)
    pp: int = Field(1, gt=0)
    ep: int = Field(1, gt=0)
    vpp: int = Field(1, gt=0)
    sequence_parallel: bool = False
    schedule: Literal["gpipe", "1f1b", "interleaved"] = "1f1b"
    zero: Literal[0, 1, 2, 3] = 1            # Megatron's distributed optimizer (NeMo RL default)


class TrainConfig(_Cfg):
    global_batch: int = Field(512, gt=0)     # samples (responses) per optimizer step
    micro_batch: int = Field(1, gt=0)        # packed sequences per microbatch
    parallel: TrainParallel = TrainParallel()
    recompute: Literal["none", "selective", "full"] = "selective"
    attention: Literal["flash", "unfused"] = "flash"
    # Pack prompt+response sequences into rows of this many tokens (NeMo RL sequence
    # packing); unset: every sequence is padded to the longest of the step.
    max_seq_len: int | None = Field(None, gt=0)
    epochs: int = Field(1, gt=0)             # passes over the step's samples (PPO epochs)


class PoolSplit(_Cfg):
    rollout_gpus: int = Field(gt=0)
    train_gpus: int = Field(gt=0)


class RLWorkload(_Cfg):
    kind: Literal["rl"] = "rl"
    algorithm: Literal["grpo", "ppo", "dapo"] = "grpo"
    model: str | dict[str, Any] = "llama3-8b"
    # PPO's critic and reward model (default: the policy's shape).
    critic_model: str | dict[str, Any] | None = None
    reward_model: str | dict[str, Any] | None = None
    precision: Precision = "bf16"
    prompts_per_step: int = Field(64, gt=0)
    samples_per_prompt: int = Field(8, gt=0)
    prompt_len: Length = 512
    response_len: Length = 1024
    rollout: RolloutConfig = RolloutConfig()
    train: TrainConfig = TrainConfig()
    placement: Literal["colocated"] | PoolSplit = "colocated"
    off_policy_steps: int = Field(0, ge=0)
    sync: Literal["nccl", "checkpoint"] = "nccl"
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> RLWorkload:
        for k in ("prompt_len", "response_len"):
            v = getattr(self, k)
            if isinstance(v, int) and v <= 0:
                raise ValueError(f"{k} must be > 0")
        if self.rollout.oversample > 1 and self.algorithm != "dapo":
            raise ValueError(f"rollout.oversample {self.rollout.oversample} is dynamic sampling, "
                             "which only algorithm: dapo does; leave it at 1")
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
