"""Fit a profile from measured inputs: microbenchmark CSVs and nccl-tests logs.

    clustersim calibrate fit kernels_cpu.csv collectives_cpu_2r.csv --out cpu.yaml

Kernel CSV -> GEMM curve per dtype, attention curves, memory bandwidth efficiency and
launch overhead (overall and per memory-bound op class). Collective CSV / nccl-tests
log -> per-link-class latency/bandwidth curve (all_reduce, the one the network model
reads) plus one curve per other op. Where the device has no exact catalog entry (a
CPU) the best observed rates are recorded as its ``device_spec`` peaks, so the fitted
efficiencies are relative to numbers measured in the same run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from calibration.fitting import (
    Fit,
    fit_attention,
    fit_collective,
    fit_gemm,
    fit_memory,
    memory_bound_shapes,
)
from calibration.parsers import read_microbench, read_nccl_tests
from hw_models import catalog
from hw_models.dtypes import DTYPE_BYTES
from hw_models.errors import ClusterSimError

# microbench memory op -> the compute model's op class it stands for (a class pools its ops;
# "loss" is cross-entropy's log-softmax forward and backward).
MEMORY_CLASS = {"copy": "memcpy", "add": "elementwise", "mul": "elementwise", "gelu": "elementwise",
                "layernorm": "norm", "softmax": "softmax", "log_softmax": "loss",
                "log_softmax_bwd": "loss", "adam": "optimizer"}
# Memory-bound GEMMs needed to fit the GEMMs' own bandwidth efficiency (one per decode
# batch size of a layer's four linears is 4; fewer leave it unidentified).
MIN_MEMORY_BOUND = 4


def sha(path: Path) -> dict[str, str]:
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def catalog_gpu_for(device_name: str) -> str | None:
    """Catalog key of a GPU named like torch/nccl-tests name it ('NVIDIA H100 80GB HBM3')."""
    name = device_name.upper().replace("-", " ")
    hits = [k for k, g in catalog.gpus().items() if k != "cpu" and g.name.split()[1] in name]
    exact = [k for k in hits if f"{int(catalog.gpu(k).hbm_gb)}GB" in name.replace(" ", "")]
    return (exact or hits or [None])[0]


def _load(paths: list[Path]) -> tuple[pd.DataFrame | None, list[pd.DataFrame]]:
    kernels, colls = [], []
    for p in paths:
        if p.suffix in (".log", ".txt"):
            log = read_nccl_tests(p)
            colls.append(pd.DataFrame({"op": log["op"].fillna("all_reduce"), "n_ranks": log["n_ranks"],
                                       "size_bytes": log["size_bytes"],
                                       "median_s": log["oop_time_us"] * 1e-6,
                                       "device": "cuda", "device_name": _log_gpu(p)}))
            continue
        df = read_microbench(p)
        (kernels if df["suite"].iloc[0] == "kernels" else colls).append(df)
    return (pd.concat(kernels, ignore_index=True) if kernels else None), colls


def _log_gpu(path: Path) -> str:
    for line in path.read_text(errors="replace").splitlines():
        if "device" in line and "Rank" in line:
            return line.split()[-1]
    return ""


def _device_key(frames: list[pd.DataFrame], device: str | None) -> str:
    if device:
        catalog.gpu(device)
        return device
    names = {(f["device"].iloc[0], f["device_name"].iloc[0]) for f in frames}
    if len(names) > 1:
        raise ClusterSimError(f"inputs come from different devices {sorted(names)}; fit one "
                              f"device per profile")
    kind, name = names.pop()
    if kind == "cpu":
        return "cpu"
    key = catalog_gpu_for(str(name))
    if key is None:
        raise ClusterSimError(f"GPU {name!r} has no catalog entry; pass --device with one of "
                              f"{', '.join(catalog.gpus())}")
    return key


def fit_kernels(df: pd.DataFrame, peaks: dict[str, float], hbm_bw: float,
                n_boot: int = 200) -> dict[str, dict[str, Fit]]:
    """GEMM per dtype, attention causal/full, memory overall and per op class."""
    out: dict[str, dict[str, Fit]] = {"gemm": {}, "attention": {}, "memory_ops": {}}
    gemm = df[df.op_class == "gemm"]
    mem = df[df.op_class == "memory"]
    overall = mem[mem.op.isin(["copy", "add"])]
    out["memory"] = {"all": fit_memory(overall.bytes, overall.median_s, hbm_bw, n_boot)}
    for cls in dict.fromkeys(MEMORY_CLASS.values()):
        rows = mem[mem.op.map(MEMORY_CLASS) == cls]
        if len(rows) >= 2:
            out["memory_ops"][cls] = fit_memory(rows.bytes, rows.median_s, hbm_bw, n_boot)
    bw_eff = out["memory"]["all"].params["bw_eff"]
    for dt, g in gemm.groupby("dtype"):
        eb = DTYPE_BYTES[dt]
        skinny = memory_bound_shapes(g.m, g.n, g.k, eb, peaks[dt], hbm_bw) >= MIN_MEMORY_BOUND
        out["gemm"][dt] = fit_gemm(g.m, g.n, g.k, g.median_s, peaks[dt], hbm_bw, bw_eff, eb,
                                   n_boot, fit_bw=skinny)
    att = df[df.op_class == "attention"]
    for causal, key in ((True, "causal"), (False, "full")):
        rows = att[att.causal.astype(str).str.lower() == str(causal).lower()]
        if len(rows) >= 2:
            peak = np.array([peaks.get(d, max(peaks.values())) for d in rows.dtype])
            out["attention"][key] = fit_attention(rows.seq, rows.flops / rows.median_s / peak,
                                                  n_boot)
    return out


def measured_peaks(df: pd.DataFrame) -> tuple[dict[str, float], float]:
    """Best observed GEMM FLOP/s per dtype and best observed copy/add bandwidth."""
    gemm = df[df.op_class == "gemm"]
    peaks = {dt: float((g.flops / g.median_s).max()) for dt, g in gemm.groupby("dtype")}
    mem = df[(df.op_class == "memory") & df.op.isin(["copy", "add"])]
    if not peaks or mem.empty:
        raise ClusterSimError("kernel CSV needs GEMM and copy/add rows to fit a profile")
    return peaks, float((mem.bytes / mem.median_s).max())


def fit_collectives(frames: list[pd.DataFrame], link_bw: dict[str, float],
                    domain_gpus: int, n_boot: int = 200) -> dict[str, Fit]:
    """One curve per (link class, op); the all_reduce curve is the link class's own."""
    from sim.network.analytical import bus_factor
    fits: dict[str, Fit] = {}
    for df in frames:
        for (op, n), g in df.groupby(["op", "n_ranks"]):
            cls = "nvlink" if int(n) <= domain_gpus else "network"
            bus = bus_factor(op, int(n)) * g.size_bytes.to_numpy(float)
            key = cls if op == "all_reduce" else f"{cls}.{op}"
            fits[key] = fit_collective(bus, g.median_s.to_numpy(float), link_bw[cls], n_boot)
    return fits


def _link_bw(device: str, system: str | None, colls: list[pd.DataFrame]) -> tuple[dict, int, float | None]:
    """Reference link bandwidths per class, the scale-up domain size, and the measured
    scale-up peak (CPU: best observed all_reduce bus bandwidth; there is no datasheet)."""
    if device == "cpu":
        ar = [f for f in colls if "busbw_gb_s" in f and (f.op == "all_reduce").any()]
        if not ar:
            return {}, 1 << 30, None
        peak = max(float(f[f.op == "all_reduce"].busbw_gb_s.max()) for f in ar) * 1e9
        return {"nvlink": peak, "network": peak}, 1 << 30, peak
    systems = catalog.systems()
    key = system or next((k for k, s in systems.items() if s.gpu == device), None)
    if key is None:
        raise ClusterSimError(f"no catalog system has GPU {device!r}; pass --system")
    s = catalog.system(key)
    net = min(s.scale_up_bw, s.gpus_per_node * s.nic_bw_per_gpu)
    return {"nvlink": s.scale_up_bw, "network": net}, s.scale_up.domain_gpus, None


def build_profile(paths: list[Path], name: str | None = None, device: str | None = None,
                  system: str | None = None, n_boot: int = 200) -> dict:
    """A profile mapping (the YAML layout of hw_models/profile.py) fitted on ``paths``;
    ``n_boot`` bootstrap resamples per fit give the parameter spread."""
    if not paths:
        raise ClusterSimError("calibrate fit needs at least one input file")
    kernels, colls = _load(paths)
    dev = _device_key(([kernels] if kernels is not None else []) + colls, device)
    gpu = catalog.gpu(dev)
    link_bw, domain, coll_peak = _link_bw(dev, system, colls)
    prof: dict = {"name": name or f"{dev}-measured", "device": dev,
                  "fitted_by": "clustersim calibrate fit", "inputs": [sha(p) for p in paths]}
    fits: dict[str, Fit] = {}
    if kernels is not None:
        peaks, hbm = measured_peaks(kernels) if dev == "cpu" else (
            {d: gpu.peak_flops(d) for d in kernels.dtype.unique()}, gpu.hbm_bw)
        k = fit_kernels(kernels, peaks, hbm, n_boot)
        mem = k["memory"]["all"].params
        prof |= {"gemm": {d: f.params for d, f in k["gemm"].items()},
                 "attention": {c: f.params for c, f in k["attention"].items()},
                 "memory": {"bw_eff": mem["bw_eff"], "launch_us": mem["launch_us"]},
                 "memory_ops": {c: f.params for c, f in k["memory_ops"].items()}}
        fits |= {f"gemm.{d}": f for d, f in k["gemm"].items()}
        fits |= {f"attention.{c}": f for c, f in k["attention"].items()}
        fits |= {"memory.all": k["memory"]["all"]}
        fits |= {f"memory_ops.{c}": f for c, f in k["memory_ops"].items()}
        if dev == "cpu":
            prof["device_spec"] = _cpu_spec(kernels, peaks, hbm, coll_peak)
    elif dev == "cpu":
        raise ClusterSimError("a CPU profile needs a kernel CSV (its peaks are measured there)")
    else:
        from hw_models.profile import load_builtin
        base = load_builtin(gpu.profile).model_dump(exclude_none=True)
        prof |= {k: base[k] for k in ("gemm", "attention", "memory", "memory_ops")}
        prof["fitted_by"] += f" (kernel curves from built-in profile {gpu.profile!r})"
    colls_fit = fit_collectives(colls, link_bw, domain, n_boot) if colls else {}
    prof["collectives"] = {k: f.params for k, f in colls_fit.items()}
    fits |= {f"collectives.{k}": f for k, f in colls_fit.items()}
    prof["quality"] = {k: f.quality for k, f in fits.items()}
    prof["uncertainty"] = {k: f.uncertainty for k, f in fits.items()}
    if not colls and dev != "cpu":
        _inherit_collectives(prof, gpu.profile)
    return prof


def _inherit_collectives(prof: dict, builtin: str) -> None:
    """Kernels measured without collectives (one GPU has no peer): the collective and
    fabric curves, with their quality and spread, come from the GPU's built-in profile
    (published nccl-tests fits), and the profile says so."""
    from hw_models.profile import load_builtin
    base = load_builtin(builtin).model_dump(exclude_none=True)
    prof["collectives"] = base["collectives"]
    prof["fabric"] = base["fabric"]
    for key in ("quality", "uncertainty"):
        prof[key] |= {k: v for k, v in base[key].items()
                      if k.startswith(("collectives.", "fabric."))}
    prof["fitted_by"] += f" (collective curves from built-in profile {builtin!r})"


def _cpu_spec(kernels: pd.DataFrame, peaks: dict[str, float], hbm: float,
              coll_peak: float | None) -> dict:
    row = kernels.iloc[0]
    procs = 1 if pd.isna(row.get("procs", 1)) else int(row.get("procs", 1))
    spec = {"name": str(row.device_name), "peak_tflops": {d: _r(v / 1e12) for d, v in peaks.items()},
            "hbm_tb_s": _r(hbm / 1e12),
            "source": f"best observed rates of calibrate run kernels/collectives, torch "
                      f"{row.torch_version}, {row.threads} threads x {procs} "
                      f"processes, {row.date}"}
    if coll_peak:
        spec["scale_up_gb_s"] = _r(coll_peak / 1e9)
    return spec


def _r(v: float) -> float:
    return float(f"{float(v):.5g}")
