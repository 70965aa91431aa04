"""Scenario blocks for a whole training run (contract with sim/scenario.py):

- ``cluster.storage``    -> StorageConfig   {checkpoint: tier, data: tier, network: net}
- ``workload.checkpoint``-> CheckpointConfig {every_steps: int | auto, mode: sync|async, ...}
- ``workload.data``      -> DataConfig      {bytes_per_token, prefetch, loader_gb_s_per_node}
- ``run``                -> RunConfig       {tokens | steps, failures, restart_s, stragglers, seed, ...}

All models forbid unknown keys. ``parse(Model, data, where)`` turns a pydantic error into
one ClusterSimError line: ``run.failures.gpu: Input should be greater than or equal to 0
(got -1)``.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hw_models import storage
from hw_models.errors import ClusterSimError
from hw_models.storage import StorageNetwork, StoragePath, StorageTier

# Failure classes counted against hardware (they need a node swapped: a hot spare or a
# replacement); software and planned interruptions only need a restart.
HARDWARE = ("gpu", "nvlink", "hbm", "nic", "host", "switch")


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class StorageConfig(_Cfg):
    """Tier by catalog name (``clustersim`` storage catalog) or inline StorageTier mapping."""
    checkpoint: str | StorageTier = Field("selene-lustre", description=(
        "checkpoint tier: a storage catalog name or an inline tier"))
    data: str | StorageTier | None = Field(None, description=(
        "training-data tier: a catalog name or an inline tier; unset: the checkpoint tier"))
    network: str | StorageNetwork | None = Field(None, description=(
        "how nodes reach storage: a catalog name or an inline network; unset: not limiting"))

    @field_validator("checkpoint", "data")
    @classmethod
    def _known(cls, v: Any) -> Any:
        if isinstance(v, str):
            storage.tier(v)                         # unknown name -> list of allowed tiers
        return v

    @field_validator("network")
    @classmethod
    def _known_net(cls, v: Any) -> Any:
        if isinstance(v, str):
            storage.network(v)
        return v

    def path(self, system_nic_bw: float | None) -> StoragePath | None:
        """The fabric to storage for a system whose compute NICs move ``system_nic_bw``."""
        return None if self.network is None else storage.network(self.network).resolve(system_nic_bw)

    def checkpoint_tier(self) -> StorageTier:
        return storage.tier(self.checkpoint)

    def data_tier(self) -> StorageTier:
        return storage.tier(self.data if self.data is not None else self.checkpoint)


class CheckpointConfig(_Cfg):
    every_steps: int | Literal["auto"] = Field("auto", description=(
        "steps between checkpoints; auto: the interval with the best goodput"))
    mode: Literal["sync", "async"] = Field("sync", description=(
        "sync: training waits for the write; async: only for the snapshot, the write runs "
        "in the background"))
    sharded: bool = Field(False, description=(
        "optimizer sharded over data parallel (ZeRO-1+/FSDP): every rank writes"))
    weight_dtype: Literal["bf16", "fp16", "fp32"] = Field("bf16", description=(
        "precision of the saved weights"))
    optimizer: Literal["adam", "sgd_momentum", "none"] = Field("adam", description=(
        "optimizer whose state is saved with the weights"))

    @field_validator("every_steps", mode="before")
    @classmethod
    def _positive(cls, v: Any) -> Any:
        if v != "auto" and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"must be a whole number of steps >= 1 or 'auto' (got {v!r})")
        return v


class DataConfig(_Cfg):
    bytes_per_token: float = Field(default=4.0, gt=0, description=(
        "bytes read per training token (4: int32 token ids)"))
    prefetch: int = Field(default=2, ge=0, description=(
        "batches loaded ahead (PyTorch DataLoader prefetch_factor default 2)"))
    loader_gb_s_per_node: float | None = Field(default=None, gt=0, description=(
        "data-loader throughput per node in GB/s; unset: not limiting"))


class FailureRates(_Cfg):
    """Interruptions per 1000 GPU-days, by cause."""
    gpu: float = Field(default=0.0, ge=0, description="GPU failures per 1000 GPU-days")
    nvlink: float = Field(default=0.0, ge=0, description="NVLink failures per 1000 GPU-days")
    hbm: float = Field(default=0.0, ge=0, description="HBM failures per 1000 GPU-days")
    nic: float = Field(default=0.0, ge=0, description="NIC failures per 1000 GPU-days")
    host: float = Field(default=0.0, ge=0, description=(
        "host (CPU, memory, board) failures per 1000 GPU-days"))
    switch: float = Field(default=0.0, ge=0, description=(
        "network switch failures per 1000 GPU-days"))
    software: float = Field(default=0.0, ge=0, description=(
        "software interruptions per 1000 GPU-days (restart only, no node swap)"))
    planned: float = Field(default=0.0, ge=0, description=(
        "planned interruptions per 1000 GPU-days (restart only, no node swap)"))

    @property
    def total(self) -> float:
        return sum(self.model_dump().values())


class Stragglers(_Cfg):
    """A slow node runs ``slowdown`` times slower and gates the synchronous step.

    ``independent``: each node is slow on a given step with probability ``fraction``, drawn
    afresh every step. ``persistent`` (sim/stragglers.py): a node turns slow and stays slow
    for an exponential time of mean ``duration_s``; ``fraction`` is the share of node-time
    spent slow when nobody acts (per-node onset rate = fraction / duration_s). With
    ``detect_s`` a slow node is drained that long after turning slow: ``drain: restart``
    restarts the job from its checkpoint (a hot spare or ``replace_s`` as for a hardware
    failure), ``live`` swaps it without a restart."""
    mode: Literal["independent", "persistent"] = Field("independent", description=(
        "independent: slow nodes drawn afresh every step; persistent: a slow node stays "
        "slow for duration_s on average"))
    fraction: float = Field(default=0.0, ge=0, lt=1, description=(
        "probability a node is slow on a step (independent) or share of node-time spent "
        "slow (persistent)"))
    slowdown: float = Field(default=1.0, ge=1, description="how many times slower a slow node runs")
    duration_s: float = Field(default=3600.0, gt=0, description=(
        "persistent: mean time a node stays slow, seconds"))
    detect_s: float | None = Field(default=None, ge=0, description=(
        "persistent: seconds until a slow node is detected and drained; unset: never"))
    drain: Literal["restart", "live"] = Field("restart", description=(
        "restart: the job restarts from its checkpoint without the node; live: swapped "
        "without a restart"))


class RunConfig(_Cfg):
    tokens: float | None = Field(default=None, gt=0, description=(
        "length of the run in training tokens (give tokens or steps)"))
    steps: int | None = Field(default=None, gt=0, description=(
        "length of the run in steps (give tokens or steps)"))
    failures: FailureRates = Field(FailureRates(), description=(
        "interruption rates per 1000 GPU-days, by cause"))
    restart_s: float = Field(default=0.0, ge=0, description=(
        "seconds of detection and job restart after an interruption, before the checkpoint load"))
    stragglers: Stragglers = Field(Stragglers(), description=(
        "slow nodes that gate the synchronous step"))
    hot_spares: int = Field(default=0, ge=0, description=(
        "spare nodes that replace a failed one at once"))
    replace_s: float = Field(default=0.0, ge=0, description=(
        "extra downtime, seconds, when no hot spare is free"))
    repair_s: float = Field(default=0.0, ge=0, description=(
        "seconds until a used spare is back in the pool"))
    seed: int = Field(0, ge=0, description="seed of the Monte-Carlo failure and straggler draws")
    samples: int = Field(default=8, ge=1, description="Monte-Carlo repetitions")

    @model_validator(mode="after")
    def _length(self) -> RunConfig:
        if (self.tokens is None) == (self.steps is None):
            raise ValueError("give exactly one of tokens or steps")
        return self


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, where: str) -> M:
    """Validate ``data`` as ``model``; any error becomes one ClusterSimError line."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise ClusterSimError(describe(exc, where)) from None


def describe(exc: ValidationError, where: str) -> str:
    # In a union (a tier name or an inline tier) pydantic reports every branch; the deepest
    # error is the one about the value the user meant, and branch tags are not field names.
    err = max(exc.errors(), key=lambda e: len(e["loc"]))
    parts = [where, *(str(p) for p in err["loc"] if not _branch_tag(p))]
    msg = err["msg"].removeprefix("Value error, ")
    got = f" (got {err['input']!r})" if "got" not in msg and err["type"] != "missing" else ""
    return f"{'.'.join(p for p in parts if p)}: {msg}{got}"


def _branch_tag(part: Any) -> bool:
    p = str(part)
    return p in ("str", "int", "float", "bool") or p[:1].isupper() or "[" in p
