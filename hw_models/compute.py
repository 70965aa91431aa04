"""Time of one operation on one accelerator: roofline x fitted efficiency curves.

The cost model is ``time(...) -> seconds``; it knows shapes and bytes, not graphs.
"""

from __future__ import annotations

from dataclasses import dataclass

from hw_models.catalog import GPUSpec
from hw_models.profile import Profile

US = 1e-6

# Op classes that are bound by memory bandwidth (their FLOPs are negligible).
MEMORY_BOUND = frozenset(
    {"elementwise", "norm", "softmax", "embedding", "loss", "optimizer", "memcpy", "other"}
)


def gemm_bytes(m: int, n: int, k: int, elem_bytes: float) -> float:
    """Bytes a GEMM must move at least: read A (m,k) and B (k,n), write C (m,n)."""
    return elem_bytes * (m * k + k * n + m * n)


def smooth_max(a: float, b: float, p: float) -> float:
    """p-norm of two times: p=1 is their sum (no overlap), p->inf their max (perfect overlap)."""
    return (a**p + b**p) ** (1.0 / p)


@dataclass(frozen=True)
class ComputeModel:
    gpu: GPUSpec
    profile: Profile
    speed_scale: float = 1.0   # >1 = faster; used for what-if and prediction bands

    def gemm(self, flops: float, bytes_: float, dtype: str) -> float:
        curve = self.profile.gemm_curve(dtype)
        eff = curve.eff_max * flops / (flops + curve.flops_half)
        t_compute = flops / (self.gpu.peak_flops(dtype) * eff)
        t_memory = bytes_ / (self.gpu.hbm_bw * self.profile.memory.bw_eff)
        return (curve.launch_us * US + smooth_max(t_compute, t_memory, curve.roofline_p)) / self.speed_scale

    def attention(self, flops: float, seq_kv: int, causal: bool, dtype: str) -> float:
        """Fused (flash) attention: FLOPs are the work actually done (halved when causal)."""
        curve = self.profile.attention["causal" if causal else "full"]
        eff = curve.eff_max * seq_kv / (seq_kv + curve.seq_half)
        launch = self.profile.memory.launch_us * US
        return (launch + flops / (self.gpu.peak_flops(dtype) * eff)) / self.speed_scale

    def memory_bound(self, bytes_: float, op_class: str = "elementwise") -> float:
        """Launch + bytes at the fitted bandwidth; per-op-class curves where the profile
        measured them (on CPUs norm and softmax run far below copy bandwidth)."""
        mem = self.profile.memory_curve(op_class)
        return (mem.launch_us * US + bytes_ / (self.gpu.hbm_bw * mem.bw_eff)) / self.speed_scale

    def time(self, op_class: str, flops: float, bytes_: float, dtype: str,
             seq_kv: int = 0, causal: bool = True) -> float:
        if op_class == "gemm":
            return self.gemm(flops, bytes_, dtype)
        if op_class == "attention":
            return self.attention(flops, seq_kv, causal, dtype)
        return self.memory_bound(bytes_, op_class)
