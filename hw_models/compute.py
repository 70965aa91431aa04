"""Time of one operation on one accelerator: roofline x fitted efficiency curves.

The cost model is ``time(...) -> seconds``; it knows shapes and bytes, not graphs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from hw_models.catalog import (
    GPUSpec,
    gpus,
    latent_attention_kernel,
    moe_align_floor_s,
    paged_decode_kernel,
    ssd_kernel,
    sustained_factor,
)
from hw_models.profile import Profile

US = 1e-6


def gemm_bytes(m: int, n: int, k: int, elem_bytes: float) -> float:
    """Bytes a GEMM must move at least: read A (m,k) and B (k,n), write C (m,n)."""
    return elem_bytes * (m * k + k * n + m * n)


def smooth_max(a: float, b: float, p: float) -> float:
    """p-norm of two times: p=1 is their sum (no overlap), p->inf their max (perfect overlap)."""
    return (a**p + b**p) ** (1.0 / p)


def wave_factor(m, n, sms: int, tile_m: int, tile_n: int, wave_exp: float):
    """Compute-time multiplier of wave quantization: a GEMM's output is cut into
    ceil(m/tile_m) x ceil(n/tile_n) tiles that run in waves of ``sms`` tiles, so a last
    partial wave costs (nearly) a full one. With w = tiles / sms the ideal penalty is
    ceil(w)/w; libraries soften it (split-K, stream-K, a choice of tile shapes), hence the
    fitted exponent ``wave_exp`` in [0, 1] (0: no penalty, 1: hard waves). Works on
    scalars and numpy arrays (``-(-a // b)`` is ceil(a / b) for both)."""
    if not (tile_m and tile_n and wave_exp and sms):
        return 1.0
    w = -(-m // tile_m) * -(-n // tile_n) / sms
    return (-(-w // 1) / w) ** wave_exp


@lru_cache(maxsize=256)
def expected_max_normal(n: int) -> float:
    """E[max of n independent standard normal draws]: the integral of x n phi(x) Phi(x)^(n-1)
    on a fine grid (n = 1: 0; n = 2: 1/sqrt(pi))."""
    if n <= 1:
        return 0.0
    x = np.linspace(-12.0, 12.0, 48001)
    phi = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))
    f = x * n * phi * cdf ** (n - 1)
    return float(np.sum((f[1:] + f[:-1]) * 0.5 * np.diff(x)))


def slowest_of(n: int, cv: float) -> float:
    """Expected compute time of the slowest of ``n`` GPUs over the mean one, when each GPU's
    step time varies independently with coefficient of variation ``cv`` (normal): a
    synchronous job (TP, PP and DP all wait for their peers) runs at the pace of its
    slowest member, 1 + cv E[max of n standard normals]."""
    return 1.0 + cv * expected_max_normal(n) if cv > 0 and n > 1 else 1.0


def paged_decode_s(constants, bytes_, kv, hbm_bw: float, bw_eff: float):
    """Seconds of one paged decode-attention call: floor + bytes at bw_eff L^n / (L^n +
    L_half^n) of the HBM bandwidth, L = ``kv`` cached tokens per sequence; ``constants`` =
    (floor s, L_half, n) (catalog.paged_decode_kernel). Scalars or numpy arrays (the fit,
    calibration/decode_attention_check.py)."""
    floor, l_half, n = constants
    return floor + bytes_ / (hbm_bw * bw_eff * kv ** n / (kv ** n + l_half ** n))


def attention_efficiency(curve, seq_kv: float) -> float:
    """Share of the BF16 peak a fused-attention kernel reaches at kv length ``seq_kv``:
    eff_max s / (s + seq_half), and where the curve has a ``seq_fall`` (the measured
    efficiency of cuDNN's Blackwell kernels peaks at 8K-32K tokens and falls beyond),
    divided by 1 + s / seq_fall, with s held at the longest measured length ``seq_max``."""
    s = min(seq_kv, curve.seq_max) if curve.seq_max else seq_kv
    eff = curve.eff_max * s / (s + curve.seq_half)
    return eff / (1.0 + s / curve.seq_fall) if curve.seq_fall else eff


@dataclass(frozen=True)
class ComputeModel:
    gpu: GPUSpec
    profile: Profile
    speed_scale: float = 1.0   # >1 = faster; used for what-if and prediction bands
    # dtype -> ``tensor_rate``: every GEMM and attention kernel asks for it
    _rates: dict[str, float] = field(default_factory=dict, init=False, repr=False,
                                     compare=False)

    def tensor_rate(self, dtype: str) -> float:
        """FLOP/s the tensor cores run at before the profile's efficiency: the catalog peak
        times the part's sustained share of it at the power limit relative to that of the
        part the profile was fitted on (``catalog.sustained_factor``; 1 where either part
        has no published saturated-GEMM measurement). Worked out once per dtype."""
        rate = self._rates.get(dtype)
        if rate is None:
            ref = gpus().get(self.profile.device)
            rate = self._rates[dtype] = (self.gpu.peak_flops(dtype)
                                         * sustained_factor(self.gpu, ref, dtype))
        return rate

    def gemm(self, flops: float, bytes_: float, dtype: str,
             shape: tuple[int, ...] | None = None) -> float:
        """``shape`` = (m, n, k) of one kernel enables the wave-quantization term."""
        curve = self.profile.gemm_curve(dtype)
        # eff = eff_max F / (F + F_half) makes the compute time (F + F_half) / (peak eff_max):
        # a throughput part and a fixed per-kernel part; waves quantize the throughput part.
        wave = 1.0
        if shape is not None and len(shape) == 3:
            wave = wave_factor(shape[0], shape[1], self.gpu.sms, curve.tile_m, curve.tile_n,
                               curve.wave_exp)
        t_compute = (flops * wave + curve.flops_half) / (self.tensor_rate(dtype) * curve.eff_max)
        t_memory = bytes_ / (self.gpu.hbm_bw * (curve.bw_eff or self.profile.memory.bw_eff))
        return (curve.launch_us * US + smooth_max(t_compute, t_memory, curve.roofline_p)) / self.speed_scale

    def attention(self, flops: float, seq_kv: int, causal: bool, dtype: str,
                  flops_per_exp: float = 0.0) -> float:
        """Fused (flash) attention: FLOPs are the work actually done (halved when causal).
        The softmax evaluates one exponential per score element on the special-function
        units, forward and again backward (P recomputed), so with ``flops_per_exp`` known
        the kernel takes at least flops / flops_per_exp exponentials at the part's
        ``exp_rate``: a roofline floor under the tensor-core time."""
        eff = attention_efficiency(self.profile.attention["causal" if causal else "full"], seq_kv)
        launch = self.profile.memory.launch_us * US
        t = flops / (self.tensor_rate(dtype) * eff)
        if flops_per_exp > 0 and self.gpu.exp_rate:
            t = max(t, flops / flops_per_exp / self.gpu.exp_rate)
        return (launch + t) / self.speed_scale

    def latent_attention(self, flops: float, bytes_: float, dtype: str) -> float:
        """Decode attention over MLA's latent cache (FlashMLA): the FLOPs at the kernel's
        published share of the peak or the cache read at its share of HBM, the slower."""
        c_eff, b_eff = latent_attention_kernel()
        launch = self.profile.memory.launch_us * US
        t = max(flops / (self.tensor_rate(dtype) * c_eff), bytes_ / (self.gpu.hbm_bw * b_eff))
        return (launch + t) / self.speed_scale

    def decode_attention(self, bytes_: float, kv_per_seq: float) -> float:
        """Paged decode attention (one query token per sequence over its cached K and V,
        FlashAttention-2's split-KV paged kernel or alike): a floor per call plus the
        bytes at a share of the HBM bandwidth that rises with the cached tokens per
        sequence L to the STREAM share of the profile, bw_eff L^n / (L^n + L_half^n)
        (engines.yaml flash_decode_paged): a short context does not amortize each
        (sequence, KV head) pair's block setup, softmax rescaling and split combination."""
        return paged_decode_s(paged_decode_kernel(), bytes_, max(kv_per_seq, 1.0),
                              self.gpu.hbm_bw, self.profile.memory.bw_eff) / self.speed_scale

    def roofline(self, flops: float, bytes_: float, dtype: str) -> float:
        """Seconds at the tensor peak or the HBM bandwidth, the slower."""
        return max(flops / self.tensor_rate(dtype), bytes_ / self.gpu.hbm_bw)

    def ssd(self, flops: float, bytes_: float, dtype: str) -> float:
        """A Triton kernel of Mamba-2's chunked SSD scan (mamba_ssm ops/triton/ssd_*.py):
        its roofline time over the share of it those kernels are measured to reach
        (engines.yaml triton_ssd; far below cuBLAS: small per-chunk matmuls interleaved
        with exponentials of the decay and fp32 state traffic)."""
        launch = self.profile.memory.launch_us * US
        return (launch + self.roofline(flops, bytes_, dtype) / ssd_kernel(self.gpu.arch)) / self.speed_scale

    def memory_bound(self, bytes_: float, op_class: str = "elementwise") -> float:
        """Launch + bytes at the fitted bandwidth; per-op-class curves where the profile
        measured them (on CPUs norm and softmax run far below copy bandwidth)."""
        mem = self.profile.memory_curve(op_class)
        return (mem.launch_us * US + bytes_ / (self.gpu.hbm_bw * mem.bw_eff)) / self.speed_scale

    def moe_align(self, bytes_: float) -> float:
        """vLLM's moe_align_block_size kernel (csrc/moe/moe_align_sum_kernels.cu): one
        thread block counts the routed tokens per expert, prefix-sums the padded counts and
        fills the sorted-token and expert-block arrays; a latency-bound kernel whose time at
        small batches is a floor (engines.yaml vllm_fused_moe ``align_floor_us``) over
        its time as an elementwise kernel of its bytes."""
        return self.memory_bound(bytes_) + moe_align_floor_s() / self.speed_scale

    def time(self, op_class: str, flops: float, bytes_: float, dtype: str,
             seq_kv: int = 0, causal: bool = True,
             shape: tuple[int, ...] | None = None, flops_per_exp: float = 0.0) -> float:
        if op_class == "gemm":
            return self.gemm(flops, bytes_, dtype, shape)
        if op_class == "attention":
            return self.attention(flops, seq_kv, causal, dtype, flops_per_exp)
        if op_class == "latent_attention":
            return self.latent_attention(flops, bytes_, dtype)
        if op_class == "ssd":
            return self.ssd(flops, bytes_, dtype)
        if op_class == "moe_align":
            return self.moe_align(bytes_)
        if op_class == "decode_attention":
            return self.decode_attention(bytes_, shape[2] if shape else 1.0)
        return self.memory_bound(bytes_, op_class)
