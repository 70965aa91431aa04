"""Fitted efficiency profiles: every fitted number with the data it came from.

A profile is YAML written by ``calibration.fit`` and read here. Layout::

    name: a100
    device: a100-80gb
    inputs: [{path, sha256}]               # the microbenchmark files it was fitted on
    gemm: {fp16: {eff_max, flops_half, launch_us, roofline_p, tile_m, tile_n, wave_exp}, ...}
    attention: {causal: {eff_max, seq_half[, seq_fall, seq_max]}, full: {...}}
    memory: {bw_eff, launch_us}
    memory_ops: {norm: {bw_eff, launch_us}, ...}   # optional per op class (measured profiles)
    collectives: {nvlink: {latency_us, eff_max, bytes_half, gamma}, network: {...}}
    fabric: {nvlink: {base_us, step_us, eff_max, bytes_half, gamma}, network: {...}}  # flow model
    quality: {...}                          # R^2 and residuals per fit
    uncertainty: {...}                      # bootstrap spread per parameter
    device_spec: {peak_tflops, hbm_tb_s, scale_up_gb_s, source}   # optional, see below

A profile measured on a device the catalog cannot know exactly (a CPU, a GPU whose
clocks differ) carries the peaks it measured in ``device_spec``; ``device_gpu`` lays
them over the catalog entry so the fitted efficiencies and the peaks stay consistent.
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hw_models.catalog import GPUSpec
from hw_models.errors import ClusterSimError
from hw_models.yamlio import load_packaged, read_yaml


class _P(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class GemmCurve(_P):
    eff_max: float = Field(gt=0, le=1)
    flops_half: float = Field(ge=0)     # FLOPs at which efficiency is half of eff_max
    launch_us: float = Field(ge=0)
    roofline_p: float = Field(ge=1)     # smooth max of compute and memory time, p-norm
    # Wave quantization (hw_models.compute.wave_factor): output tile the library's GEMM
    # kernels use (0 = term off) and the fitted exponent of the partial-wave penalty.
    tile_m: int = Field(0, ge=0)
    tile_n: int = Field(0, ge=0)
    wave_exp: float = Field(0.0, ge=0, le=1)
    # Bandwidth efficiency of memory-bound GEMMs (decode's skinny products stream the
    # weights: cuBLAS reaches less of HBM there than a copy does). Fitted where the
    # measurements hold such shapes; unset: the profile's memory bw_eff.
    bw_eff: float | None = Field(None, gt=0, le=1)


class AttentionCurve(_P):
    """Fused-attention efficiency against the kv length s (``hw_models.compute``):
    eff_max s / (s + seq_half), divided by (1 + s / seq_fall) where the kernel's measured
    efficiency falls again at long sequences (``seq_fall``), with s held at ``seq_max``,
    the longest measured kv length, when set: the decline is not extrapolated."""
    eff_max: float = Field(gt=0, le=1)
    seq_half: float = Field(ge=0)       # kv length at which efficiency is half of eff_max
    seq_fall: float | None = Field(None, gt=0)   # unset: no decline (rising to eff_max)
    seq_max: float | None = Field(None, gt=0)    # unset: the curve at any length


class MemoryCurve(_P):
    bw_eff: float = Field(gt=0, le=1)
    launch_us: float = Field(ge=0)


class Variability(_P):
    """Measured spread of a GPU's step time, what makes a synchronous job of many GPUs wait
    for the slowest (``hw_models.compute.slowest_of``). Two independent sources, each a
    coefficient of variation: ``step_cv``, the run-to-run spread of one GPU's repeated
    steps (temporal jitter), and ``gpu_cv``, the spread of the mean step time between GPUs
    of one model (manufacturing and power management); 0 where not measured. One GPU's step
    in a job deviates by the sum of both, so the job sees ``cv`` = their root sum of
    squares. ``inputs``: the measurements they were computed from."""
    step_cv: float = Field(0.0, ge=0, lt=0.5)
    gpu_cv: float = Field(0.0, ge=0, lt=0.5)
    inputs: list[dict[str, str]] = []

    @property
    def cv(self) -> float:
        return math.hypot(self.step_cv, self.gpu_cv)


class _SizeRamp:
    """The size ramp of achieved bandwidth shared by the collective and fabric curves."""

    def eff(self, nbytes: float) -> float:
        """eff(S) = eff_max / (1 + (bytes_half / S)^gamma); eff_max at S <= 0 or no ramp."""
        if nbytes <= 0 or self.bytes_half <= 0:
            return self.eff_max
        return self.eff_max / (1.0 + (self.bytes_half / nbytes) ** self.gamma)


class CollectiveCurve(_SizeRamp, _P):
    latency_us: float = Field(ge=0)
    eff_max: float = Field(gt=0, le=1.5)  # >1 allowed for in-switch reduction (NVLS) vs link bw
    bytes_half: float = Field(ge=0)
    gamma: float = Field(gt=0)
    # The group a network curve was fitted on (kind, GPUs, nodes, GPUs per node): its
    # latency is NCCL's on that group (sim/network/analytical.py scale_out_ring_time).
    # None: the echo 16-GPU two-node all_reduce (analytical.FIT_GROUP).
    fit_group: tuple[str, int, int, int] | None = None
    # Latency per tree level (each of the tree's 2 log2(nodes) network hops) above NCCL's
    # constant, fitted on sweeps at two node counts or more; 0: NCCL's constants
    # (analytical.nccl_latency_us). Bounded by NCCL's tree network LL hop (5.0 us).
    level_us: float = Field(default=0.0, ge=-5.0)
    # Rate of one store-and-forward network hop of the tree with LL, as a fraction of the
    # ring's link bandwidth (sim/network/collectives/tree_pipeline.py): the tree's LL chunks
    # cross each network level in turn. Fitted with ``level_us``; None: no such term.
    ll_hop_eff: float | None = Field(default=None, gt=0.0, le=1.5)


class FabricCurve(_SizeRamp, _P):
    """Fitted per link class for the flow model (calibration.build_profiles, fit_fabric):
    extra latency over NCCL's own constants (``base_us`` once, ``step_us`` per hop) and the
    size ramp of achieved bandwidth eff(S) = eff_max / (1 + (bytes_half / S)^gamma)."""
    base_us: float = 0.0
    step_us: float = 0.0
    eff_max: float = Field(default=1.0, gt=0, le=1.5)
    bytes_half: float = Field(default=0.0, ge=0)
    gamma: float = Field(default=1.0, gt=0)
    # The group a ``network.*`` curve was fitted on (kind, GPUs, nodes, GPUs per node): the
    # tuner reads its ramp at bytes per NIC relative to that group's (analytical.nic_ramp_scale).
    # None: the echo 16-GPU two-node all_reduce (analytical.FIT_GROUP).
    fit_group: tuple[str, int, int, int] | None = None


class DeepEPFit(_P):
    """DeepEP's internode normal kernels: bytes per second per SM their NVLink forwarders
    and receivers move (calibration/fit_deepep.py); the kernel's NVLink side runs at the
    lower of that times its SMs and the NVLink point-to-point rate."""
    nvl_gb_s_per_sm: float = Field(gt=0)
    n_points: int = Field(default=0, ge=0)


class DeviceSpec(_P):
    """Peaks measured on the profiled device (best observed GEMM FLOP/s per dtype, best
    observed copy/add bandwidth, best observed collective bus bandwidth)."""
    name: str
    peak_tflops: dict[str, float]
    hbm_tb_s: float = Field(gt=0)
    scale_up_gb_s: float | None = Field(default=None, gt=0)
    source: str


class Profile(_P):
    name: str
    device: str
    fitted_by: str = ""
    inputs: list[dict[str, str]] = []
    gemm: dict[str, GemmCurve]
    attention: dict[str, AttentionCurve]
    memory: MemoryCurve
    memory_ops: dict[str, MemoryCurve] = {}
    collectives: dict[str, CollectiveCurve] = {}
    fabric: dict[str, FabricCurve] = {}
    deepep: DeepEPFit | None = None
    quality: dict[str, Any] = {}
    uncertainty: dict[str, Any] = {}
    device_spec: DeviceSpec | None = None
    variability: Variability | None = None

    def gemm_curve(self, dtype: str) -> GemmCurve:
        if dtype in self.gemm:
            return self.gemm[dtype]
        # bf16 and fp16 share tensor-core paths; fp8 without its own curve uses fp16's;
        # block-scaled low precision (mxfp8, nvfp4) uses the fp8 curve where there is one.
        order = ("fp8", "fp16", "bf16") if dtype in ("mxfp8", "nvfp4") else ("fp16", "bf16", "fp8")
        for alias in order:
            if alias in self.gemm:
                return self.gemm[alias]
        raise ClusterSimError(f"profile {self.name!r} has no GEMM curve for {dtype!r}")


    def memory_curve(self, op_class: str) -> MemoryCurve:
        return self.memory_ops.get(op_class, self.memory)


PROFILE_DIR = "profiles"


class ResidualBand(_P):
    """How far published measurements fall from the predictions across the validation
    suites (``clustersim validate all``): the ``level`` quantile of |ln(published time /
    predicted time)|, every suite weighted equally. A band [low, high] is widened to
    [low / exp(log_half_width), high * exp(log_half_width)]."""
    level: float = Field(gt=0, lt=1)
    log_half_width: float = Field(ge=0)
    rows: int = Field(ge=0)
    suites: list[str] = []
    fitted_by: str = ""

    def widen(self, low: float, high: float) -> tuple[float, float]:
        f = math.exp(self.log_half_width)
        return low / f, high * f


RESIDUAL_BAND_PATH = Path(str(resources.files("calibration").joinpath(
    PROFILE_DIR, "bands", "validation_residuals.yaml")))


@cache
def load_residual_band() -> ResidualBand | None:
    """The stored validation-residual band, or None where none has been written."""
    if not RESIDUAL_BAND_PATH.is_file():
        return None
    return ResidualBand(**read_yaml(RESIDUAL_BAND_PATH, "residual band"))


@cache
def load_builtin(name: str) -> Profile:
    path = resources.files("calibration").joinpath(PROFILE_DIR, f"{name}.yaml")
    if not path.is_file():
        raise ClusterSimError(f"no built-in profile {name!r}; allowed: {', '.join(builtin_names())}")
    return parse(load_packaged(path.read_text()), source=name)


def builtin_names() -> list[str]:
    folder = resources.files("calibration").joinpath(PROFILE_DIR)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load(ref: str | Path) -> Profile:
    """A profile by built-in name or by path to a YAML file."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml"):
        return parse(read_yaml(path, "profile"), source=str(path))
    return load_builtin(str(ref))


def parse(data: Any, source: str) -> Profile:
    if not isinstance(data, dict):
        raise ClusterSimError(f"profile {source!r} must be a mapping")
    try:
        return Profile(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ClusterSimError(f"profile {source!r}: {where}: {err['msg']}") from None


def check_device(profile: Profile, gpu_key: str, gpu: GPUSpec) -> None:
    """A profile applies to the device it was fitted on, or to GPUs whose catalog entry
    names it as their profile (H200 and B200 borrow Hopper's curves, stated there)."""
    if profile.device == gpu_key or profile.name == gpu.profile:
        return
    raise ClusterSimError(
        f"profile {profile.name!r} was fitted on device {profile.device!r}, but the cluster's "
        f"GPU is {gpu_key!r}; use a profile of {gpu_key!r} (built-in: {gpu.profile!r}) or "
        f"a GPU entry for {profile.device!r}")


def device_gpu(profile: Profile, gpu: GPUSpec) -> GPUSpec:
    """The catalog GPU with the profile's measured peaks laid over it (if it has any)."""
    spec = profile.device_spec
    if spec is None:
        return gpu
    update: dict[str, Any] = {"peak_tflops": {**gpu.peak_tflops, **spec.peak_tflops},
                              "hbm_tb_s": spec.hbm_tb_s,
                              "source": f"{gpu.source}; peaks measured: {spec.source}"}
    if spec.scale_up_gb_s:
        update["scale_up_gb_s"] = spec.scale_up_gb_s
    return gpu.model_copy(update=update)


# ---- uncertainty corners (calibration/uncertainty.py builds bands on them) ----------------
# +1: a larger value makes operations faster; -1: slower; absent: left at the fit
# (gamma bends the curve both ways around bytes_half).
FASTER = {"eff_max": 1, "bw_eff": 1, "roofline_p": 1, "flops_half": -1, "seq_half": -1, "seq_fall": 1,
          "launch_us": -1, "latency_us": -1, "bytes_half": -1}
# Schema upper bounds that the bootstrap tail must not cross.
CAPS = {("gemm", "eff_max"): 1.0, ("gemm", "bw_eff"): 1.0, ("attention", "eff_max"): 1.0, ("memory", "bw_eff"): 1.0,
        ("memory_ops", "bw_eff"): 1.0, ("collectives", "eff_max"): 1.5}


def _target(data: dict[str, Any], key: str) -> tuple[str, dict[str, Any]] | None:
    """The parameter mapping an uncertainty key names ('gemm.fp16', 'memory.launch',
    'collectives.nvlink.all_gather')."""
    section, _, rest = key.partition(".")
    if section == "memory":
        return section, data["memory"]
    block = data.get(section)
    if isinstance(block, dict) and rest in block:
        return section, block[rest]
    return None


def _corner(profile: Profile, direction: int) -> Profile:
    data = profile.model_dump()
    for key, params in profile.uncertainty.items():
        found = _target(data, key)
        if found is None:
            continue
        section, target = found
        for name, interval in params.items():
            sign = FASTER.get(name)
            if sign is None or name not in target:
                continue
            value = interval["p95"] if sign * direction > 0 else interval["p05"]
            cap = CAPS.get((section, name))
            target[name] = min(value, cap) if cap else value
    data["name"] = f"{profile.name}-{'fast' if direction > 0 else 'slow'}"
    return Profile(**data)


def band_profiles(profile: Profile) -> tuple[Profile, Profile]:
    """(fast, slow): the profile with every parameter at its quick / slow end of the
    bootstrap interval in ``profile.uncertainty`` (the 5th and 95th percentile per fit)."""
    return _corner(profile, +1), _corner(profile, -1)


def calibration_status(profile: Profile, gpu_key: str) -> dict[str, str]:
    """How the time model of ``gpu_key`` is calibrated with this profile:
    ``measured`` (fitted on runs of our own, calibration/measured/), ``fitted`` (on the
    named published microbenchmarks), or ``roofline-assumed`` (the part's peaks with
    efficiencies borrowed from a profile fitted on another device)."""
    files = [Path(i["path"]).name for i in profile.inputs if "path" in i]
    if profile.device != gpu_key:
        return {"status": "roofline-assumed", "profile": profile.name,
                "detail": f"{gpu_key} peaks with efficiencies fitted on {profile.device} "
                          f"({', '.join(files) or 'no inputs'}); no microbenchmarks of "
                          f"{gpu_key} in the reference set"}
    measured = any("calibration/measured/" in i.get("path", "") for i in profile.inputs)
    return {"status": "measured" if measured else "fitted", "profile": profile.name,
            "detail": f"fitted on {', '.join(files) or 'no inputs'}"}
