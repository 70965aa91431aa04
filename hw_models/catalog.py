"""Hardware catalog: GPUs and systems as YAML data, converted to SI units once at load."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hw_models.errors import ClusterSimError, UnknownPresetError
from hw_models.yamlio import read_packaged

GB = 1e9
GIB = 2**30
TFLOP = 1e12


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


# Formats whose sustained rate is the measured one of another: the same tensor cores at
# the same rate per clock (fp16 / bf16; MXFP8's block scales ride on the FP8 rate).
_SUSTAINED_ALIAS = {"fp16": "bf16", "mxfp8": "fp8"}


class GPUSpec(_Spec):
    name: str
    arch: str
    peak_tflops: dict[str, float]
    hbm_gb: float = Field(gt=0)
    hbm_tb_s: float = Field(gt=0)
    scale_up_gb_s: float = Field(gt=0)
    sms: int | None = Field(None, gt=0)   # SMs / CUs; unset: no wave-quantization term
    tdp_w: float | None = Field(None, gt=0)     # board max power; unset: not published
    host_gb_s: float | None = Field(None, gt=0)  # host link per direction
    # Exponentials per second of the special-function units (MUFU.EX2, tera/s): the rate
    # a flash-attention kernel's softmax cannot beat (hw_models.compute). Unset: no floor.
    exp_t_s: float | None = Field(None, gt=0)
    # Dense TFLOP/s a GEMM sustains once the part sits at its power limit and its SM clock
    # has settled (a published saturated-GEMM measurement, per dtype); unset where none is
    # published. Its share of the peak sets the part's sustained tensor-core rate against
    # the part an efficiency profile was calibrated on (``sustained_factor``).
    sustained_tflops: dict[str, float] = {}
    profile: str
    source: str

    @property
    def dtypes(self) -> list[str]:
        """The formats the part's tensor units run (the keys of its peak table)."""
        return sorted(self.peak_tflops)

    def peak_flops(self, dtype: str) -> float:
        """Dense peak FLOP/s for a dtype the part supports (its catalog ``peak_tflops``)."""
        self.require_dtype(dtype)
        return self.peak_tflops[dtype] * TFLOP

    def supports(self, dtype: str) -> bool:
        return dtype in self.peak_tflops

    def require_dtype(self, dtype: str, where: str = "") -> None:
        """One clear error for a dtype the part has no tensor-core peak for (fp8 on an A100):
        never run it silently at another dtype's speed."""
        if dtype not in self.peak_tflops:
            raise ClusterSimError(
                f"{where + ': ' if where else ''}the {self.name} does not support {dtype}; "
                f"its catalog entry has {', '.join(sorted(self.peak_tflops))}")

    def sustained_share(self, dtype: str) -> float | None:
        """Share of the dense peak a GEMM holds at the power limit (catalog
        ``sustained_tflops`` over ``peak_tflops``); fp16 takes bf16's figure and mxfp8 fp8's
        (the same tensor-core rate, the same clocks). None where not measured."""
        key = dtype if dtype in self.sustained_tflops else _SUSTAINED_ALIAS.get(dtype)
        if key not in self.sustained_tflops or key not in self.peak_tflops:
            return None
        return self.sustained_tflops[key] / self.peak_tflops[key]

    @property
    def hbm_bytes(self) -> float:
        """HBM capacity. Stacks come in binary sizes (5 x 16 GiB on an 80 GB H100, 5 x 16
        on an A100 80GB), so the datasheet's "GB" is GiB: nvidia-smi reports 81920 MiB on
        an A100 80GB and 81559 MiB on an H100 SXM5 80GB."""
        return self.hbm_gb * GIB

    @property
    def exp_rate(self) -> float | None:
        """Exponentials per second (catalog ``exp_t_s``); None where not published."""
        return self.exp_t_s * 1e12 if self.exp_t_s else None

    @property
    def hbm_bw(self) -> float:
        """HBM bandwidth in bytes/s."""
        return self.hbm_tb_s * 1e12


def sustained_factor(gpu: GPUSpec, ref: GPUSpec | None, dtype: str) -> float:
    """Tensor-core rate of ``gpu`` against its catalog peak, relative to ``ref``, the part
    whose measurements an efficiency profile was fitted on: share of the peak ``gpu``
    sustains at its power limit over the share ``ref`` sustains (``sustained_share``).
    A profile fitted end to end on ``ref`` already carries ``ref``'s settled clock in its
    efficiencies, so only the difference between the two parts is applied. 1 where the
    parts are the same or either share is not measured."""
    if ref is None or ref.name == gpu.name:
        return 1.0
    mine, theirs = gpu.sustained_share(dtype), ref.sustained_share(dtype)
    return mine / theirs if mine and theirs else 1.0


class ScaleUpSpec(_Spec):
    kind: str
    domain_gpus: int = Field(gt=0)
    gb_s_per_gpu: float = Field(gt=0)
    hop_latency_us: float = Field(ge=0)
    nvls: bool = False
    torus_dims: int | None = Field(None, ge=2, le=3)   # ici-torus: 2D or 3D torus

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        """A scale-up fabric the models know (hw_models/topologies/scale_up.py): the
        analytical model never builds the graph, so a misspelt kind would price as a switch."""
        from hw_models import topologies  # noqa: F401  (registers the builders)
        from hw_models.topology import SCALE_UP
        if v not in SCALE_UP:
            raise ValueError(f"unknown scale_up.kind {v!r}; allowed: {', '.join(sorted(SCALE_UP))}")
        return v


class SystemSpec(_Spec):
    gpu: str | GPUSpec
    gpus_per_node: int = Field(gt=0)
    scale_up: ScaleUpSpec
    nics_per_node: int = Field(ge=0)
    nic_gbps: float = Field(ge=0)
    nic_hop_latency_us: float = Field(ge=0)
    cost_per_gpu_hour_usd: float | None = None   # default from prices.yaml
    system_max_kw: float | None = Field(None, gt=0)  # whole node's max power, where published
    profile: str | None = None   # fitted on this system's own sweeps; else the GPU's
    # Host DRAM bandwidth of a node, for the optimizer offloaded to the CPU
    # (docs/long_context.md); the GPU <-> host link is the GPU's host_gb_s.
    host_mem_gb_s: float | None = Field(None, gt=0)
    # The host CPU where it changes host-side software time (engines.yaml host_cpus).
    host_cpu: str | None = None
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


@cache
def gpus() -> dict[str, GPUSpec]:
    return {k: GPUSpec(**v) for k, v in read_packaged("hw_models", "data", "gpus.yaml").items()}


@cache
def systems() -> dict[str, SystemSpec]:
    """Systems with their default GPU-hour price (prices.yaml) where one is listed."""
    rent = prices()["usd_per_gpu_hour"]
    return {k: SystemSpec(**({"cost_per_gpu_hour_usd": rent[k]["value"]} if k in rent else {})
                          | v)
            for k, v in read_packaged("hw_models", "data", "systems.yaml").items()}


@cache
def prices() -> dict[str, Any]:
    """The dated price table (hw_models/data/prices.yaml): GPU-hour rents, power, lifetime."""
    return read_packaged("hw_models", "data", "prices.yaml")


@cache
def serving_engines() -> dict[str, dict[str, Any]]:
    """Host-side costs of serving engines (hw_models/data/engines.yaml), each with its
    source: ``host_per_seq_us`` per sequence per iteration; ``eager_launch`` the launch
    interval of kernels run without CUDA graphs."""
    return read_packaged("hw_models", "data", "engines.yaml")


def vllm_sleep() -> dict[str, dict[str, float]]:
    """vLLM sleep mode's level-1 ``wake`` and ``sleep``: each ``{fixed_s, link_share}``,
    seconds = fixed_s + weight bytes per GPU / (link_share x host-link line rate)
    (engines.yaml vllm_sleep, fitted by calibration/vllm_sleep_check.py)."""
    d = serving_engines()["vllm_sleep"]
    return {ev: {k: float(v) for k, v in d[ev].items()} for ev in ("wake", "sleep")}


def engine_host_per_seq_s(name: str) -> float:
    """Seconds of host work per sequence per iteration of serving engine ``name``."""
    return float(serving_engines()[name]["host_per_seq_us"]) * 1e-6


def host_cpu_factor(system: SystemSpec) -> float:
    """How much longer host-side software (Python, PyTorch dispatch) takes on the system's
    host CPU than on the x86 hosts the engine figures were measured on (1: unlisted)."""
    cpus = serving_engines()["host_cpus"]
    if system.host_cpu is None:
        return 1.0
    if system.host_cpu not in cpus:
        raise ClusterSimError(f"host_cpu {system.host_cpu!r} is not in hw_models/data/engines.yaml "
                              f"host_cpus; known: {sorted(cpus)}")
    return float(cpus[system.host_cpu]["factor"])


def engine_host_s(name: str, system: SystemSpec) -> float:
    """Host seconds per sequence per iteration of engine ``name`` on ``system``'s host."""
    per_seq = engine_host_per_seq_s(name)
    return per_seq * host_cpu_factor(system) if per_seq else 0.0


def refit_per_tensor_s(system: SystemSpec) -> float:
    """Host seconds per Hugging Face tensor of an RL weight refit on ``system``'s host
    (engines.yaml weight_refit: export on the sender, load_weights on the receiver)."""
    return float(serving_engines()["weight_refit"]["per_tensor_us"]) * 1e-6 * host_cpu_factor(system)


def training_launch_s(system: SystemSpec) -> float:
    """Host seconds per op an eager training step issues on ``system``'s host
    (engines.yaml training_launch, scaled by the host CPU)."""
    return float(serving_engines()["training_launch"]["per_op_us"]) * 1e-6 * host_cpu_factor(system)


def moe_layer_launch_us() -> dict[str, float]:
    """Host microseconds per kernel launch in the forward of Megatron-Core's eager MoE layer,
    as measured on engines.yaml moe_layer_launch's ``host_cpu`` (router_preprocess_us,
    experts_us)."""
    m = serving_engines()["moe_layer_launch"]
    return {k: float(m[k]) for k in ("router_preprocess_us", "experts_us")}


def moe_ep_skew_cv() -> float:
    """Coefficient of variation of one rank's host time between two of an eager MoE
    layer's cross-rank syncs (engines.yaml moe_layer_launch ep_skew_cv; a ratio, the same
    on every host CPU)."""
    return float(serving_engines()["moe_layer_launch"]["ep_skew_cv"])


def _host_us_to_s(system: SystemSpec, measured_on: str | None) -> float:
    """Seconds on ``system``'s host CPU per microsecond measured on the host CPU
    ``measured_on`` (an engines.yaml host_cpus key; None: the x86 reference), both by their
    host_cpus factors."""
    ref = float(serving_engines()["host_cpus"][measured_on]["factor"]) if measured_on else 1.0
    return 1e-6 * host_cpu_factor(system) / ref


def moe_layer_launch_s(system: SystemSpec) -> tuple[float, float]:
    """(router and preprocessing, experts) host seconds per launch of Megatron-Core's eager
    MoE layer forward on ``system``'s host CPU (engines.yaml moe_layer_launch, rescaled from
    its ``host_cpu`` by the host_cpus factors)."""
    us = moe_layer_launch_us()
    scale = _host_us_to_s(system, serving_engines()["moe_layer_launch"].get("host_cpu"))
    return us["router_preprocess_us"] * scale, us["experts_us"] * scale


def te_module_launch_s(system: SystemSpec, precision: str) -> dict[str, tuple[float, float]]:
    """Host seconds of one call of each Transformer Engine module in ``precision`` ('bf16'
    or 'mxfp8'), (forward, backward), on ``system``'s host CPU (engines.yaml
    te_module_launch, measured on its ``host_cpu`` and rescaled by the host_cpus factors)."""
    te = serving_engines()["te_module_launch"]
    scale = _host_us_to_s(system, te["host_cpu"])
    out: dict[str, tuple[float, float]] = {}
    for module, rows in te["modules"].items():
        if precision not in rows:
            raise ClusterSimError(f"engines.yaml te_module_launch has no {precision!r} figures for "
                                  f"{module}; known: {sorted(rows)}")
        fwd, both = float(rows[precision]["fwd_us"]), float(rows[precision]["fwd_bwd_us"])
        out[module] = (fwd * scale, (both - fwd) * scale)
    return out


def sampler_kernels(name: str) -> tuple[tuple[str, str, float], ...]:
    """The kernels serving engine sampler ``name`` runs per decode step over the sampled
    rows' logits (engines.yaml samplers): (kernel, op class, bytes moved per logit)."""
    table = serving_engines()["samplers"]
    if name not in table:
        raise ClusterSimError(f"sampler {name!r} is not in hw_models/data/engines.yaml samplers; "
                              f"known: {sorted(table)}")
    return tuple((k, str(c), float(b)) for k, (c, b) in table[name]["kernels"].items())


def eager_launch_s() -> float:
    """Seconds between kernel launches without CUDA graphs (the host's launch interval)."""
    return float(serving_engines()["eager_launch"]["launch_us"]) * 1e-6


@cache
def power_constants() -> dict[str, float]:
    """The power model's constants (hw_models/data/power.yaml), each with its source."""
    return {k: float(v["value"]) for k, v in read_packaged("hw_models", "data", "power.yaml").items()}


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
    return f"{where}: {err['msg'].removeprefix('Value error, ')}"


def _model_word(name: str) -> str:
    """The model of a GPU name: its first word with a digit (H100, A100, MI300X, GB200)."""
    return next((w for w in name.upper().replace("-", " ").split() if any(c.isdigit() for c in w)), "")


def gpu_for_device(device: str, memory_gb: float | None = None,
                   units: int | None = None) -> str | None:
    """Catalog GPU key of a device as the PyTorch profiler names it ('NVIDIA H100 80GB HBM3',
    'NVIDIA A100-PG509-200', 'AMD Instinct MI250X/MI250'), or None. Matched on the model
    word; among its sizes, the one whose memory the trace records (totalGlobalMem) or
    names ('80GB'). A name without a model word (ROCm reports 'AMD Radeon Graphics' where
    it has no marketing name) is matched on the vendor, the SM/CU count (``numSms``) and
    the memory instead, when exactly one part has them."""
    words = set(device.upper().replace("-", " ").replace("/", " ").split())
    hits = [k for k, g in gpus().items() if k != "cpu" and _model_word(g.name) in words]
    if not hits and units:
        return _by_units(device, memory_gb, units)
    if len(hits) <= 1:
        return hits[0] if hits else None
    if memory_gb:
        return min(hits, key=lambda k: abs(gpus()[k].hbm_gb - memory_gb))
    named = [k for k in hits if f"{int(gpus()[k].hbm_gb)}GB" in device.upper().replace(" ", "")]
    return (named or hits)[0]


# Memory a trace records (totalGlobalMem, a little under the HBM size) within this share.
_MEMORY_MATCH = 0.1


def _by_units(device: str, memory_gb: float | None, units: int) -> str | None:
    vendor = device.upper().split()[0] if device.split() else ""
    hits = [k for k, g in gpus().items() if g.sms == units
            and g.name.upper().split()[0] == vendor
            and (memory_gb is None or abs(g.hbm_bytes / GB - memory_gb) <= _MEMORY_MATCH
                 * g.hbm_bytes / GB)]
    return hits[0] if len(hits) == 1 else None


def system_for_gpu(gpu_key: str) -> str | None:
    """The catalog system built on this GPU (a DGX-style one first), or None."""
    names = [n for n, s in systems().items() if s.gpu == gpu_key]
    return next((n for n in names if n.startswith("dgx-")), names[0] if names else None)


def ssd_kernel(arch: str | None = None) -> float:
    """Share of the roofline mamba_ssm's Triton SSD scan kernels reach on a GPU of
    architecture ``arch`` (engines.yaml triton_ssd: ``roofline_frac``, fitted on Hopper
    kernel timings, and ``by_arch`` where a published Mamba-2 training run on that
    architecture gives its own; both fitted by calibration/ssd_kernel_check.py)."""
    k = serving_engines()["triton_ssd"]
    return float(k.get("by_arch", {}).get(arch, k["roofline_frac"]))


def latent_attention_kernel() -> tuple[float, float]:
    """(compute efficiency, HBM efficiency) of decode attention over MLA's latent cache
    (engines.yaml flashmla_decode: FlashMLA's published throughput on H800)."""
    k = serving_engines()["flashmla_decode"]
    return float(k["compute_eff"]), float(k["bw_eff"])


def paged_decode_kernel() -> tuple[float, float, float]:
    """(floor seconds, half-saturation tokens per sequence, ramp exponent) of a paged
    decode-attention kernel call (engines.yaml flash_decode_paged, fitted by
    calibration/decode_attention_check.py ``fit`` on FlashAttention-2's published H100
    paged batch-decode times)."""
    k = serving_engines()["flash_decode_paged"]
    return float(k["floor_us"]) * 1e-6, float(k["kv_half_tokens"]), float(k["ramp_exponent"])


def moe_align_floor_s() -> float:
    """Seconds of latency floor of the block alignment in one vLLM fused_moe call
    (engines.yaml vllm_fused_moe ``align_floor_us``, fitted by
    calibration/fused_moe_check.py ``fit_align_floor``)."""
    return float(serving_engines()["vllm_fused_moe"]["align_floor_us"]) * 1e-6
