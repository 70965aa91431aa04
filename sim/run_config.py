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
    checkpoint: str | StorageTier = "selene-lustre"
    data: str | StorageTier | None = None          # default: the checkpoint tier
    network: str | StorageNetwork | None = None    # how nodes reach storage; None: not limiting

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
    every_steps: int | Literal["auto"] = "auto"     # auto: the best interval found
    mode: Literal["sync", "async"] = "sync"
    sharded: bool = False          # optimizer sharded over data parallel (ZeRO-1+/FSDP): all write
    weight_dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    optimizer: Literal["adam", "sgd_momentum", "none"] = "adam"

    @field_validator("every_steps", mode="before")
    @classmethod
    def _positive(cls, v: Any) -> Any:
        if v != "auto" and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"must be a whole number of steps >= 1 or 'auto' (got {v!r})")
        return v


class DataConfig(_Cfg):
    bytes_per_token: float = Field(default=4.0, gt=0)     # int32 token ids
    prefetch: int = Field(default=2, ge=0)                # PyTorch DataLoader prefetch_factor default
    loader_gb_s_per_node: float | None = Field(default=None, gt=0)


class FailureRates(_Cfg):
    """Interruptions per 1000 GPU-days, by cause."""
    gpu: float = Field(default=0.0, ge=0)
    nvlink: float = Field(default=0.0, ge=0)
    hbm: float = Field(default=0.0, ge=0)
    nic: float = Field(default=0.0, ge=0)
    host: float = Field(default=0.0, ge=0)
    switch: float = Field(default=0.0, ge=0)
    software: float = Field(default=0.0, ge=0)
    planned: float = Field(default=0.0, ge=0)

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
    mode: Literal["independent", "persistent"] = "independent"
    fraction: float = Field(default=0.0, ge=0, lt=1)
    slowdown: float = Field(default=1.0, ge=1)
    duration_s: float = Field(default=3600.0, gt=0)
    detect_s: float | None = Field(default=None, ge=0)
    drain: Literal["restart", "live"] = "restart"


class RunConfig(_Cfg):
    tokens: float | None = Field(default=None, gt=0)
    steps: int | None = Field(default=None, gt=0)
    failures: FailureRates = FailureRates()
    restart_s: float = Field(default=0.0, ge=0)       # detection + job restart, before the load
    stragglers: Stragglers = Stragglers()
    hot_spares: int = Field(default=0, ge=0)
    replace_s: float = Field(default=0.0, ge=0)       # extra downtime when no hot spare is free
    repair_s: float = Field(default=0.0, ge=0)        # until a used spare is back in the pool
    seed: int = 0
    samples: int = Field(default=8, ge=1)             # Monte-Carlo repetitions

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
