"""Hardware catalog: GPUs and systems as YAML data, converted to SI units once at load."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hw_models.errors import ClusterSimError, UnknownPresetError

GB = 1e9
TFLOP = 1e12


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GPUSpec(_Spec):
    name: str
    arch: str
    peak_tflops: dict[str, float]
    hbm_gb: float = Field(gt=0)
    hbm_tb_s: float = Field(gt=0)
    scale_up_gb_s: float = Field(gt=0)
    sms: int = Field(gt=0)
    profile: str
    source: str

    def peak_flops(self, dtype: str) -> float:
        """Dense peak FLOP/s for a dtype (fp8 falls back to fp16 where the part has none)."""
        if dtype in self.peak_tflops:
            return self.peak_tflops[dtype] * TFLOP
        if dtype == "fp8":
            return self.peak_tflops["bf16"] * TFLOP
        raise ClusterSimError(
            f"GPU {self.name!r} has no peak for dtype {dtype!r}; allowed: {sorted(self.peak_tflops)}"
        )

    @property
    def hbm_bytes(self) -> float:
        return self.hbm_gb * GB

    @property
    def hbm_bw(self) -> float:
        """HBM bandwidth in bytes/s."""
        return self.hbm_tb_s * 1e12


class ScaleUpSpec(_Spec):
    kind: str
    domain_gpus: int = Field(gt=0)
    gb_s_per_gpu: float = Field(gt=0)
    hop_latency_us: float = Field(ge=0)
    nvls: bool = False


class SystemSpec(_Spec):
    gpu: str | GPUSpec
    gpus_per_node: int = Field(gt=0)
    scale_up: ScaleUpSpec
    nics_per_node: int = Field(ge=0)
    nic_gbps: float = Field(ge=0)
    nic_hop_latency_us: float = Field(ge=0)
    cost_per_gpu_hour_usd: float | None = None
    profile: str | None = None   # fitted on this system's own sweeps; else the GPU's
    # Host side, for offload (docs/long_context.md): GPU <-> host link per GPU and per
    # direction (PCIe or NVLink-C2C), and the node's host DRAM bandwidth (CPU optimizer).
    host_link_gb_s: float | None = Field(None, gt=0)
    host_mem_gb_s: float | None = Field(None, gt=0)
    source: str = "inline"

    @property
    def gpu_spec(self) -> GPUSpec:
        return self.gpu if isinstance(self.gpu, GPUSpec) else gpu(self.gpu)

    @property
    def default_profile(self) -> str:
        """The profile a scenario on this system gets unless it names one."""
        return self.profile or self.gpu_spec.profile

    @property
    def nic_bw_per_gpu(self) -> float:
        """Scale-out bytes/s available to one GPU (its share of the node's NICs)."""
        return self.nics_per_node * self.nic_gbps * 1e9 / 8 / self.gpus_per_node

    @property
    def scale_up_bw(self) -> float:
        return self.scale_up.gb_s_per_gpu * GB


def _load_yaml(package: str, name: str) -> dict[str, Any]:
    text = resources.files(package).joinpath("data", name).read_text()
    return yaml.safe_load(text)


@cache
def gpus() -> dict[str, GPUSpec]:
    return {k: GPUSpec(**v) for k, v in _load_yaml("hw_models", "gpus.yaml").items()}


@cache
def systems() -> dict[str, SystemSpec]:
    return {k: SystemSpec(**v) for k, v in _load_yaml("hw_models", "systems.yaml").items()}


def gpu(name: str) -> GPUSpec:
    table = gpus()
    if name not in table:
        raise UnknownPresetError("gpu", name, list(table))
    return table[name]


def system(name_or_spec: str | dict[str, Any]) -> SystemSpec:
    """A system preset by name, or an inline mapping validated like a preset."""
    if isinstance(name_or_spec, dict):
        spec = dict(name_or_spec)
        if isinstance(spec.get("gpu"), str):
            gpu(spec["gpu"])  # fail early with the list of GPUs
        try:
            return SystemSpec(**spec)
        except ValidationError as exc:
            raise ClusterSimError(f"inline system: {_first_error(exc)}") from None
    table = systems()
    if name_or_spec not in table:
        raise UnknownPresetError("system", name_or_spec, list(table))
    return table[name_or_spec]


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}"
