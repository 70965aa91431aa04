"""Batching policies, one file each, found by name. Adding one = one file + one line."""

from __future__ import annotations

from hw_models.errors import ClusterSimError
from workloads.inference.schedulers.base import Batch, Item, Limits, Replica, Scheduler
from workloads.inference.schedulers.disaggregated import Disaggregated
from workloads.inference.schedulers.orca import Orca
from workloads.inference.schedulers.sarathi import Sarathi
from workloads.inference.schedulers.static import Static
from workloads.inference.schedulers.vllm import VLLM

REGISTRY: dict[str, type[Scheduler]] = {}


def register(cls: type[Scheduler]) -> type[Scheduler]:
    if cls.name in REGISTRY:
        raise ValueError(f"batching policy {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


for _cls in (Static, Orca, VLLM, Sarathi, Disaggregated):
    register(_cls)


def make(name: str, limits: Limits) -> Scheduler:
    if name not in REGISTRY:
        raise ClusterSimError(f"unknown batching policy {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name](limits)


__all__ = ["Batch", "Item", "Limits", "Replica", "Scheduler", "REGISTRY", "make"]
