"""Scenario files: YAML validated by pydantic. The schema is a contract; extend, don't rename.

A bad field raises ClusterSimError with one line naming the field, the value and what
is allowed; the CLI turns it into exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hw_models.errors import ClusterSimError
from hw_models.yamlio import read_yaml
from sim.inference_config import InferenceWorkload
from sim.run_config import CheckpointConfig, DataConfig, RunConfig, StorageConfig
from sim.training_config import CPKind, Fp8Config, OffloadConfig, Schedule, TPOverlap


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NetworkConfig(_Cfg):
    topology: str = "rail-optimized"
    oversubscription: float = Field(1.0, ge=1.0)
    nic_gbps: float | None = Field(None, gt=0)
    # Flow fidelity only (docs/fabric.md): path choice, SHARP in-network reduction, and the
    # max-min solver's relative tolerance (0 is exact; unset keeps sim/network/flow.py's).
    routing: Literal["ecmp", "spray"] | None = None
    sharp: bool | None = None
    tolerance: float | None = Field(None, ge=0, lt=1)


class ClusterConfig(_Cfg):
    system: str | dict[str, Any] = "dgx-h100"
    nodes: int = Field(1, gt=0)
    network: NetworkConfig = NetworkConfig()
    profile: str | None = None          # built-in profile name or path to a profile YAML
    storage: StorageConfig | None = None  # checkpoint/data tiers (docs/reliability.md)


class ParallelConfig(_Cfg):
    tp: int = Field(1, gt=0)
    pp: int = Field(1, gt=0)
    dp: int | None = Field(None, gt=0)
    vpp: int = Field(1, gt=0)
    sequence_parallel: bool = False
    schedule: Schedule = "1f1b"
    zero: Literal[0, 1, 2, 3] = 0
    pipeline_layers: list[int] | None = None     # per pp rank, or per virtual stage
    # long context, schedules, overlap, FSDP2 (docs/long_context.md, docs/schedules.md)
    cp: int = Field(1, gt=0)
    cp_kind: CPKind = "ring"
    ulysses_size: int | None = Field(None, gt=0)   # hybrid CP; default: CP ranks in a node
    account_for_embedding_in_pipeline_split: bool = False
    account_for_loss_in_pipeline_split: bool = False
    tp_comm_overlap: TPOverlap = "none"
    reshard_after_forward: bool = True
    prefetch: int = Field(1, gt=0)
    zero_shard_group: int | None = Field(None, gt=0)


class TrainingWorkload(_Cfg):
    kind: Literal["training"] = "training"
    model: str | dict[str, Any] = "gpt3-175b"
    seq_len: int | None = Field(None, gt=0)
    global_batch: int = Field(1536, gt=0)
    micro_batch: int = Field(1, gt=0)
    precision: Literal["fp16", "bf16", "fp8"] = "bf16"
    parallel: ParallelConfig = ParallelConfig()
    recompute: Literal["none", "selective", "full"] = "none"
    attention: Literal["flash", "unfused"] = "flash"
    overlap_grad_reduce: bool = True
    grad_reduce_bytes: Literal[2, 4] | None = None   # default: 4 for bf16 (fp32 main grads), else 2
    checkpoint: CheckpointConfig | None = None      # docs/reliability.md
    data: DataConfig | None = None
    fp8: Fp8Config | None = None                    # precision: fp8 recipe (docs/fp8.md)
    offload: OffloadConfig | None = None            # host offload (docs/long_context.md)


class SimConfig(_Cfg):
    fidelity: Literal["analytical", "flow"] = "analytical"
    seed: int = 0
    check_memory: bool = True
    speed_scale: float = Field(1.0, gt=0)   # compute speed multiplier (what-if)


class Scenario(_Cfg):
    name: str = "scenario"
    cluster: ClusterConfig = ClusterConfig()
    workload: Annotated[TrainingWorkload | InferenceWorkload, Field(discriminator="kind")] = \
        TrainingWorkload()
    sim: SimConfig = SimConfig()
    run: RunConfig | None = None        # a whole run: failures, stragglers -> goodput

    @model_validator(mode="before")
    @classmethod
    def _default_kind(cls, data: Any) -> Any:
        """``kind`` picks the workload schema; scenarios written before it existed train."""
        w = data.get("workload") if isinstance(data, dict) else None
        if isinstance(w, dict) and "kind" not in w:
            data = {**data, "workload": {**w, "kind": "training"}}
        return data


DEFAULT_SCENARIO: dict[str, Any] = {
    "name": "gpt3-175b-1024-h100",
    "cluster": {"system": "dgx-h100", "nodes": 128},
    "workload": {"kind": "training", "model": "gpt3-175b", "global_batch": 1536,
                 "micro_batch": 1, "precision": "bf16",
                 "parallel": {"tp": 8, "pp": 8, "vpp": 3, "sequence_parallel": True,
                              "schedule": "interleaved", "zero": 1},
                 "recompute": "selective"},
    "sim": {"fidelity": "analytical"},
}


def describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = [str(p) for p in err["loc"] if not str(p).startswith("function")]
        if loc[:1] == ["workload"] and loc[1:2] in (["training"], ["inference"]):
            del loc[1]                   # the discriminated union's tag is not a key
        where = ".".join(loc)
        got = err.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {got!r})"
        parts.append(f"{where}: {err['msg']}{got_s}")
    return "; ".join(parts)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``workload.parallel.tp=4`` style overrides; values are parsed as YAML scalars."""
    for item in overrides:
        if "=" not in item:
            raise ClusterSimError(f"--set {item!r}: expected KEY=VALUE, e.g. workload.parallel.tp=4")
        key, raw = item.split("=", 1)
        set_dotted(data, key.strip(), yaml.safe_load(raw), f"--set {key}")
    return data


def set_dotted(data: dict[str, Any], key: str, value: Any, where: str, context: str = "") -> None:
    """Set ``a.b.c`` in nested mappings, creating levels; ``where``/``context`` name the
    caller in the error when a level exists but is not a mapping."""
    node = data
    *path, leaf = key.split(".")
    for p in path:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ClusterSimError(f"{where}: {p!r} is not a mapping{context}")
        node = nxt
    node[leaf] = value


def parse(data: Any, source: str = "scenario") -> Scenario:
    if not isinstance(data, dict):
        raise ClusterSimError(f"{source}: a scenario must be a YAML mapping with cluster/workload/sim")
    if "base" in data and "workload" not in data:   # a sweep file (docs/sweeps.md)
        raise ClusterSimError(f"{source} is a sweep file (it has 'base'), not a scenario; run it "
                              f"with `clustersim sweep {source} --out RESULTS.parquet`")
    try:
        return Scenario(**data)
    except ValidationError as exc:
        raise ClusterSimError(f"{source}: {describe(exc)}") from None


def load(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    data = read_yaml(path, "scenario")
    return parse(apply_overrides(data or {}, overrides or []), str(path))


def default(overrides: list[str] | None = None) -> Scenario:
    import copy
    return parse(apply_overrides(copy.deepcopy(DEFAULT_SCENARIO), overrides or []), "default scenario")
