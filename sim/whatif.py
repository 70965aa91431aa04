"""Re-costing measured kernels and collectives on another accelerator or fabric.

A measured duration is anchored, not replaced: the source model is inverted to find the
work that takes the measured time on the source hardware, and the target model prices
the same work. Every model term used here is affine in its work variable (the compute
model's GEMM time with bytes ignored is ``launch + (F + F_half) / (peak * eff_max)``,
attention ``launch + F / (peak * eff(seq))``, memory-bound ``launch + B / (hbm * bw_eff)``;
hw_models/compute.py), so ``t = a + b*x`` is read off the model at two points and the
re-costed time is ``a_t + b_t * (t_measured - a_s) / b_s``. Big kernels therefore move by
the ratio of the slopes (peak x efficiency), launch-bound ones by the ratio of launch
costs. Collectives use the analytical network model the same way: the message size comes
from the trace (c10d records it) or, where absent, from inverting the source model, and
the time is scaled by ``t_target / t_source``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from hw_models import catalog
from hw_models.catalog import SystemSpec
from hw_models.compute import ComputeModel
from hw_models.errors import ClusterSimError
from hw_models.profile import load_builtin
from sim.network.analytical import AnalyticalNetwork
from sim.setup import system_network
from workloads.graph import Collective, CommGroup, Compute

# Work points at which the affine model terms are read (large enough that every
# efficiency curve is far from its small-size knee; the terms are exactly affine anyway).
_X1, _X2 = 1e12, 2e12


@dataclass(frozen=True)
class WhatIf:
    """What changes between the measured run and the predicted one."""
    source_system: str = "dgx-a100"
    target_system: str | None = None   # None: same as source
    gpu: str | None = None             # target GPU override (catalog name)
    dp: int | None = None              # data-parallel size of the target (collective groups)
    bw_scale: float = 1.0              # multiplies every link bandwidth of the target
    nic_gbps: float | None = None      # target NIC speed override
    # GEMM/attention dtype (the trace does not record it); None: bf16, or fp16 on a part
    # without bf16 (V100)
    dtype: str | None = None
    attention_seq: int = 2048          # kv length assumed for attention kernels

    def __post_init__(self) -> None:
        if not (math.isfinite(self.bw_scale) and self.bw_scale > 0):
            raise ClusterSimError(f"bw_scale must be a finite number > 0, got {self.bw_scale}")
        if self.dp is not None and self.dp < 1:
            raise ClusterSimError(f"dp must be >= 1, got {self.dp}")
        if self.attention_seq < 1:
            raise ClusterSimError(f"attention_seq must be >= 1, got {self.attention_seq}")


# Traces that record no GPU (CPU-only Kineto, Execution Traces, Chakra) are costed on this.
NO_DEVICE_SOURCE = "dgx-a100"
# Device names the importers give ranks that record no GPU.
NO_DEVICE = {"", "cpu", "et", "chakra"}


def source_system_for(devices: dict[int, str], memory_gb: dict[int, float],
                      given: str | None = None,
                      units: dict[int, int] | None = None) -> tuple[str, str]:
    """The system a trace was measured on, and a sentence saying how it was chosen: the
    user's ``given`` one, else the catalog system of the GPU the trace records. A recorded
    GPU the catalog does not model is refused: re-costing it from another part would be
    silently wrong."""
    if given:
        catalog.system(given)
        return given, f"source system {given} (--source-system)"
    names = sorted({d for d in devices.values() if d not in NO_DEVICE})
    if not names:
        return NO_DEVICE_SOURCE, (f"the trace records no GPU; costed as measured on "
                                  f"{NO_DEVICE_SOURCE} (choose with --source-system)")
    if len(names) > 1:
        raise ClusterSimError(f"the trace's ranks ran on different GPUs ({', '.join(names)}); "
                              "pass --source-system")
    key = catalog.gpu_for_device(names[0], max(memory_gb.values(), default=None),
                                 max((units or {}).values(), default=None))
    system = catalog.system_for_gpu(key) if key else None
    if system is None:
        raise ClusterSimError(
            f"the trace was recorded on {names[0]!r}, which the catalog does not model; pass "
            f"--source-system with the closest system ({', '.join(catalog.systems())})")
    return system, f"source system {system}: the trace was recorded on {names[0]!r}"


def default_dtype(gpu) -> str:
    """The tensor format a trace's GEMMs are costed at when neither the trace nor
    ``--set dtype`` says: bf16, or fp16 on a part without bf16 units (V100)."""
    return "bf16" if gpu.supports("bf16") else "fp16"


def whatif_dtype(w: WhatIf) -> str:
    """The dtype the what-if's target GEMMs are costed at (``w.dtype`` or its default)."""
    return w.dtype or default_dtype(_system(w.target_system or w.source_system, w.gpu).gpu_spec)


# ``--set key=value`` keys and their types (fields of WhatIf).
SETTABLE = {"gpu": str, "dp": int, "bw_scale": float, "nic_gbps": float, "dtype": str,
            "attention_seq": int}


def parse_sets(items: list[str]) -> dict:
    """``["bw_scale=2", "gpu=h100-sxm"]`` -> WhatIf keyword arguments."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in SETTABLE:
            raise ClusterSimError(f"--set {item!r}: expected key=value with key one of "
                                  f"{', '.join(SETTABLE)}")
        try:
            out[key] = SETTABLE[key](value)
        except ValueError:
            raise ClusterSimError(f"--set {key}: {value!r} is not a valid "
                                  f"{SETTABLE[key].__name__}") from None
    return out


def _system(name: str, gpu: str | None = None, nic_gbps: float | None = None) -> SystemSpec:
    sys = catalog.system(name)
    update = {}
    if gpu is not None:
        catalog.gpu(gpu)  # unknown name: one clear error with the allowed list
        update |= {"gpu": gpu, "profile": None}   # the system's own profile was fitted for its GPU
    if nic_gbps is not None:
        if not (math.isfinite(nic_gbps) and nic_gbps > 0):
            raise ClusterSimError(f"nic_gbps must be a finite number > 0, got {nic_gbps}")
        update["nic_gbps"] = nic_gbps
    return sys.model_copy(update=update) if update else sys


def _model(sys: SystemSpec) -> ComputeModel:
    gpu = sys.gpu_spec
    return ComputeModel(gpu, load_builtin(sys.default_profile))


class Recoster:
    """Measured duration -> predicted duration, per kernel class and per collective."""

    def __init__(self, w: WhatIf, world: int):
        self.w = w
        self.src_sys = _system(w.source_system)
        self.tgt_sys = _system(w.target_system or w.source_system, w.gpu, w.nic_gbps)
        self.src, self.tgt = _model(self.src_sys), _model(self.tgt_sys)
        # The what-if dtype must exist on the target; a source without it (fp8 on an A100,
        # bf16 on a V100) ran those GEMMs at its default (bf16; fp16 on a V100).
        self.tgt_dtype = w.dtype or default_dtype(self.tgt.gpu)
        self.tgt.gpu.require_dtype(self.tgt_dtype, "--set dtype")
        src = w.dtype or default_dtype(self.src.gpu)
        self.src_dtype = src if self.src.gpu.supports(src) else default_dtype(self.src.gpu)
        self.src.gpu.require_dtype(self.src_dtype, "--source-system")
        self.world = world
        self.src_net = self._network(self.src_sys, world, 1.0)
        self.tgt_net = self._network(self.tgt_sys, max(world, w.dp or 0), w.bw_scale)
        self.identity = (self.tgt_sys == self.src_sys and w.bw_scale == 1.0
                         and w.dp in (None, world))
        self._coef = lru_cache(maxsize=None)(self._coef_uncached)

    @staticmethod
    def _network(sys: SystemSpec, world: int, bw_scale: float) -> AnalyticalNetwork:
        return system_network(sys, world, load_builtin(sys.default_profile), bw_scale)

    def _time(self, model: ComputeModel, cls: str, x: float) -> float:
        dtype = self.src_dtype if model is self.src else self.tgt_dtype
        if cls == "gemm":
            return model.gemm(x, 0.0, dtype)
        if cls == "attention":
            return model.attention(x, self.w.attention_seq, True, dtype)
        return model.memory_bound(x)

    def _coef_uncached(self, cls: str) -> tuple[float, float, float, float]:
        """(a_s, b_s, a_t, b_t) of ``t = a + b*x`` on source and target."""
        out = []
        for m in (self.src, self.tgt):
            t1, t2 = self._time(m, cls, _X1), self._time(m, cls, _X2)
            b = (t2 - t1) / (_X2 - _X1)
            out += [t1 - b * _X1, b]
        return tuple(out)

    def compute(self, cls: str, dur: float) -> float:
        """Re-costed time of a kernel of class ``cls`` measured at ``dur`` seconds."""
        if self.identity or dur <= 0:
            return dur
        if cls == "nccl":
            return dur
        a_s, b_s, a_t, b_t = self._coef(cls)
        x = (dur - a_s) / b_s
        if x <= 0:  # shorter than the source model's launch cost: launch-bound
            return dur * (a_t / a_s if a_s > 0 else 1.0)
        return a_t + b_t * x

    def price_compute(self, op: Compute, target: bool) -> float:
        """Model time of an op with no recorded duration (Execution Trace alone, Chakra):
        its FLOPs and bytes priced on the source system, or on the target for the what-if.
        A dtype the GPU has no peak for (bf16 on V100, fp8 on A100) uses the what-if's."""
        model = self.tgt if target else self.src
        dtype = op.dtype if op.dtype in model.gpu.peak_tflops else (
            self.tgt_dtype if target else self.src_dtype)
        seq_kv = op.shape[2] if op.op_class == "attention" and op.shape and len(op.shape) > 2 \
            else self.w.attention_seq
        cls = op.op_class if op.op_class in ("gemm", "attention") else "elementwise"
        if cls == "attention" and seq_kv < 1:
            return 0.0
        return model.time(cls, op.flops, op.bytes, dtype, seq_kv=seq_kv, causal=op.causal)

    def price_collective(self, op: Collective, target: bool) -> float:
        if target:
            return self.tgt_net.collective_time(op.kind, op.bytes, self.target_group(op.group))
        return self.src_net.collective_time(op.kind, op.bytes, op.group)

    def target_group(self, group: CommGroup) -> CommGroup:
        if self.w.dp is None or group.size != self.world:
            return group
        return CommGroup(tuple(range(self.w.dp)), group.dim)

    def collective(self, op: Collective, dur: float) -> float:
        if self.identity or dur <= 0:
            return dur
        nbytes = op.bytes if op.bytes > 0 else self._invert_bytes(op, dur)
        t_src = self.src_net.collective_time(op.kind, nbytes, op.group)
        t_tgt = self.tgt_net.collective_time(op.kind, nbytes, self.target_group(op.group))
        if t_src <= 0:
            return dur + t_tgt
        return dur * t_tgt / t_src

    def _invert_bytes(self, op: Collective, dur: float) -> float:
        """Message size that takes ``dur`` on the source (bisection in log space; the model
        is increasing in size)."""
        lo, hi = 1.0, 1e13
        if self.src_net.collective_time(op.kind, hi, op.group) <= 0:
            return 0.0
        for _ in range(60):
            mid = math.sqrt(lo * hi)
            if self.src_net.collective_time(op.kind, mid, op.group) < dur:
                lo = mid
            else:
                hi = mid
        return lo
