"""Fit the built-in a100 / h100 profiles from the published microbenchmarks.

    python -m calibration.build_profiles      # rewrites calibration/profiles/*.yaml

Inputs (calibration/reference/, each with its source in its header or README):
- kernels/gemm_cublaslt.csv      GEMM TFLOP/s vs shape (A100 fp16, H100 fp8)
- vidur/compute/h100_*_ops.csv   H100 fp16 GEMM operator times (transformer shapes)
- kernels/hbm_stream.csv         STREAM bandwidth -> memory-bound efficiency
- vidur/compute/*_ops.csv        residual ``add`` times -> memory-bound kernel overhead;
                                 norm/elementwise/embedding operators at <= 64 tokens ->
                                 per-class fixed cost (memory_ops)
- kernels/flashattention2.csv    attention efficiency vs sequence length
- collectives/*.csv, echo_nccl_tests/*{16,64}gpu.log  all_reduce sweeps -> collective curves
                                 (a100 network: 2 and 8 nodes, with a per-hop latency)
                                 (h100 network: collectives/voltage_park_h100_4node_all_reduce.csv)
- the same sweeps + echo 2/4/8 GPU logs -> flow-model ``fabric`` fits (calibration/fit_fabric.py;
                                 a100 network on the 16- and 64-GPU logs)
- variability/lonestar6_a100_resnet50_per_gpu.csv  per-GPU mean step times of 219 A100s ->
                                 the A100 spread between GPUs (variability.gpu_cv)
- kernels/gemm_blackwell.csv, kernels/attention_cudnn_blackwell.csv -> the Blackwell
  profiles ``b200``, ``gb200``, ``gb300`` (calibration/blackwell.py)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from calibration.collective_fits import (
    A100_NETWORK_GPUS,
    H100_NETWORK,
    H100_NVLS_SWEEP,
    H100_RING_POINTS,
    H100_RING_RAMP,
    a100_collectives,
    h100_collectives,
    ring_plateau,
)
from calibration.fitting import Fit, fit_attention, fit_gemm, fit_memory_launch
from calibration.parsers import VIDUR_GEMMS, vidur_gemm_shapes
from calibration.reference_files import REF, reference_csv, reference_sha
from hw_models import catalog
from hw_models.dtypes import DTYPE_BYTES

OUT = Path(str(resources.files("calibration").joinpath("profiles")))


MEASURED = REF.parent / "measured"
STEP_LOGS = ("h100/gpu_steps.json", "h100/gpu_steps_compiled.json")


def _sha_measured(rel: str) -> dict[str, str]:
    return {"path": f"calibration/measured/{rel}",
            "sha256": hashlib.sha256((MEASURED / rel).read_bytes()).hexdigest()}


def step_variability(logs: tuple[str, ...] = STEP_LOGS) -> dict[str, float]:
    """Run-to-run spread of one GPU's training step: the pooled coefficient of variation
    (root mean square over the runs of each run's sample std / mean) of the repeated step
    times that benchmarks/gpu_step.py recorded on one H100 (6 GPT shapes, eager and
    torch.compile, 10 steps each after warm-up)."""
    cvs = []
    for rel in logs:
        for row in json.loads((MEASURED / rel).read_text())["rows"]:
            steps = np.asarray(row["steps_s"], float)
            cvs.append(steps.std(ddof=1) / steps.mean())
    return {"step_cv": round(float(np.sqrt(np.mean(np.square(cvs)))), 5)}


GPU_SPREAD = "variability/lonestar6_a100_resnet50_per_gpu.csv"


def gpu_spread(rel: str = GPU_SPREAD, column: str = "mean_iter_dur_mean") -> dict[str, float]:
    """Spread of the mean step time between GPUs of one model: the robust coefficient of
    variation (1.4826 x median absolute deviation / median) of the per-GPU mean iteration
    times of one benchmark timed alone on every GPU of a cluster. Robust because the
    normal the model draws from describes the body: a few whole nodes running 2x slower
    (persistent slow nodes, ``sim.stragglers``) are another mechanism and would dominate
    a plain standard deviation."""
    x = reference_csv(rel)[column].to_numpy(float)
    med = np.median(x)
    return {"gpu_cv": round(float(1.4826 * np.median(np.abs(x - med)) / med), 5)}


GPU_SPREAD_NOTE = ("variability.gpu_cv: spread of the mean ResNet-50 step time between the 219 "
                   "A100s of TACC Lonestar6 (PAL, Jain et al. SC'24; calibration/reference/"
                   f"{GPU_SPREAD}), robust cv; no A100 step log, so no run-to-run part "
                   "(step_cv); a synchronous job waits for its slowest GPU "
                   "(sim.setup.paced_compute).")


def memory_eff(column: str, gpu: catalog.GPUSpec) -> float:
    """STREAM copy/mul/add/triad mean bandwidth over the datasheet figure."""
    df = reference_csv("kernels/hbm_stream.csv").set_index("kernel")
    return round(float(df.loc[["copy", "mul", "add", "triad"], column].mean()) * 1e12
                 / gpu.hbm_bw, 4)


def vidur_ops(prefix: str) -> pd.DataFrame:
    frames = [pd.read_csv(p) for p in sorted((REF / "vidur/compute").glob(f"{prefix}_*_ops.csv"))]
    return pd.concat(frames, ignore_index=True)


def memory_launch(prefix: str, gpu: catalog.GPUSpec, bw_eff: float) -> Fit:
    """Residual add reads two (tokens, hidden) fp16 tensors and writes one."""
    df = vidur_ops(prefix)
    nbytes = 3 * 2 * df["num_tokens"] * df["n_embd"]
    return fit_memory_launch(nbytes, df["time_stats.add.median"] * 1e-3, gpu.hbm_bw, bw_eff)


# Token counts at which a memory-bound kernel's fixed cost outweighs its bytes (a few MB
# at most): the rows that pin the per-class floor without bending the bandwidth term.
SMALL_TOKENS = 64


def memory_ops_floors(prefix: str, gpu: catalog.GPUSpec, bw_eff: float) -> dict[str, Fit]:
    """Fixed cost per kernel class (norm, elementwise, embedding) from Vidur's operator
    times at small token counts (the decode regime), bandwidth fixed by STREAM: an RMSNorm
    or a fused activation of one token takes 4-7 us on an H100 where a residual add takes
    1-2 us, so one floor from ``add`` under-prices decode."""
    from calibration.vidur import LayerShape, op_costs
    df = vidur_ops(prefix)
    df = df[df.num_tokens <= SMALL_TOKENS]
    cols = {"norm": ("input_layernorm", "post_attention_layernorm"),
            "elementwise": ("attn_rope", "mlp_act", "add"), "embedding": ("emb",)}
    costs = [op_costs(LayerShape(int(h), int(a), int(kv), int(f), bool(gated)), int(t), int(tp))
             for h, a, kv, f, gated, t, tp in zip(
                 df.n_embd, df.n_head, df.n_kv_head, df.n_expanded_embd, df.use_gated_mlp,
                 df.num_tokens, df.num_tensor_parallel_workers, strict=True)]
    out = {}
    for cls, ops in cols.items():
        nbytes = [c[op][2] for op in ops for c in costs]
        times = np.concatenate([df[f"time_stats.{op}.median"].to_numpy() * 1e-3 for op in ops])
        out[cls] = fit_memory_launch(nbytes, times, gpu.hbm_bw, bw_eff)
    return out


def gemm_from_cublaslt(column: str, dtype: str, gpu: catalog.GPUSpec, bw_eff: float) -> Fit:
    df = reference_csv("kernels/gemm_cublaslt.csv")
    t = 2 * df.m * df.n * df.k / (df[column] * 1e12)
    return fit_gemm(df.m, df.n, df.k, t, gpu.peak_flops(dtype), gpu.hbm_bw, bw_eff, DTYPE_BYTES[dtype],
                    sms=gpu.sms)


def gemm_from_vidur(prefix: str, gpu: catalog.GPUSpec, bw_eff: float) -> Fit:
    ops = vidur_ops(prefix)
    df = pd.concat([vidur_gemm_shapes(ops, op) for op in VIDUR_GEMMS], ignore_index=True)
    return fit_gemm(df.m, df.n, df.k, df.time_s, gpu.peak_flops("fp16"), gpu.hbm_bw, bw_eff, 2,
                    sms=gpu.sms)


def attention(gpu_name: str, gpu: catalog.GPUSpec) -> dict[str, Fit]:
    """FlashAttention-2 fwd+bwd TFLOP/s (FLOPs as the paper counts them) vs sequence length."""
    df = reference_csv("kernels/flashattention2.csv")
    df = df[(df.gpu == gpu_name) & (df["pass"] == "fwd_bwd")]
    seqs = {"s512": 512, "s1k": 1024, "s2k": 2048, "s4k": 4096, "s8k": 8192, "s16k": 16384}
    fits = {}
    for causal, key in (("yes", "causal"), ("no", "full")):
        rows = df[df.causal == causal]
        s = np.concatenate([[seqs[c]] * len(rows) for c in seqs])
        eff = np.concatenate([rows[c].to_numpy() for c in seqs]) * 1e12 / gpu.peak_flops("fp16")
        fits[key] = fit_attention(s, eff)
    return fits


# Which built-in profile carries each system's fitted fabric: every reference sweep names
# its profile (validate_nccl.Sweep.profile); profiles without multi-node sweeps borrow
# the network curve of the one system that has them (same 8x HDR 200 Gb/s per node; the
# curve is relative to the topology's NIC bandwidth, which the catalog scales).
NETWORK_FROM = "a100"
# Profiles whose nvlink.Simple curve is NVLS's (the node's all_reduce sweep runs NVLS):
# (system, published ring points) for their ``nvlink.ring.Simple`` plateau
# (fit_fabric.ring_on_plateau). The Blackwell profiles copy the h100 fabric section.
RING_POINTS = {"h100": ("dgx-h100", H100_RING_POINTS)}
_FABRIC: dict[str, dict[str, Fit]] = {}


def fabric_sweeps(name: str) -> dict[str, list]:
    """The measured sweeps each link class of profile ``name``'s fabric section is fitted
    on: ``nvlink`` (single-node all_reduce sweeps), ``network`` (multi-node ones, those of
    NETWORK_FROM where the profile's system has none) and ``p2p`` (send/recv sweeps)."""
    from calibration.blackwell import PARTS
    from calibration.fit_p2p import p2p_sweeps
    from calibration.validate_nccl import reference_sweeps
    if name in PARTS:          # the Blackwell profiles carry the h100 fabric section
        name = "h100"
    sweeps = [s for s in reference_sweeps() if name in (s.profile, *s.also_fits)]
    network = [s for s in sweeps if s.nodes > 1]
    if not network and name != NETWORK_FROM:
        network = fabric_sweeps(NETWORK_FROM)["network"]
    return {"nvlink": [s for s in sweeps if s.nodes == 1], "network": network,
            "p2p": [s for s in p2p_sweeps() if s.profile == name]}


def fabric_fits(name: str, partial: dict) -> dict[str, Fit]:
    """Flow-model parameters per link class (calibration/fit_fabric.py), fitted on the
    sweeps of the profile's own system (``fabric_sweeps``); cached per profile within
    one build."""
    if name in _FABRIC:
        return _FABRIC[name]
    from calibration.fit_fabric import fit_profile_fabric
    from hw_models.profile import parse
    prof = parse(partial, source=name)
    sweeps = fabric_sweeps(name)
    own = [s for s in sweeps["network"] if name in (s.profile, *s.also_fits)]
    fits = fit_profile_fabric(prof, sweeps["nvlink"], own)
    if not any(k.startswith("network") for k in fits):
        fits |= {k: v for k, v in fabric_fits(NETWORK_FROM, partial).items()
                 if k.startswith("network")}
    from calibration.fit_p2p import fit_p2p
    for s in sweeps["p2p"]:
        fits["nvlink.p2p"] = fit_p2p(s, prof)
    if name in RING_POINTS:
        from calibration.fit_fabric import ring_on_plateau
        link_bw = catalog.system(RING_POINTS[name][0]).scale_up_bw
        fits["nvlink.ring.Simple"] = ring_on_plateau(
            fits["nvlink.Simple"], ring_plateau(link_bw, RING_POINTS[name][1]))
    _FABRIC[name] = fits
    return fits


def _profile(name: str, device: str, inputs: list[str], gemm: dict[str, Fit],
             attn: dict[str, Fit], bw_eff: float, launch: Fit, colls: dict[str, Fit],
             notes: list[str], floors: dict[str, Fit] | None = None) -> dict:
    partial = {"name": name, "device": device, "gemm": {k: v.params for k, v in gemm.items()},
               "attention": {k: v.params for k, v in attn.items()},
               "memory": {"bw_eff": bw_eff, "launch_us": launch.params["launch_us"]}}
    fabric = fabric_fits(name, partial)
    floors = floors or {}
    fits = {f"gemm.{k}": v for k, v in gemm.items()} | {f"attention.{k}": v for k, v in attn.items()}
    fits |= {"memory.launch": launch} | {f"collectives.{k}": v for k, v in colls.items()}
    fits |= {f"memory_ops.{k}": v for k, v in floors.items()}
    fits |= {f"fabric.{k}": v for k, v in fabric.items()}
    return {
        "name": name, "device": device, "fitted_by": "python -m calibration.build_profiles",
        "inputs": [reference_sha(p) for p in inputs],
        "gemm": {k: v.params for k, v in gemm.items()},
        "attention": {k: v.params for k, v in attn.items()},
        "memory": {"bw_eff": bw_eff, "launch_us": launch.params["launch_us"]},
        **({"memory_ops": {k: {"bw_eff": bw_eff, **v.params} for k, v in floors.items()}}
           if floors else {}),
        "collectives": {k: v.params for k, v in colls.items()},
        "fabric": {k: v.params for k, v in fabric.items()},
        "quality": {k: v.quality for k, v in fits.items()} | {"notes": notes},
        "uncertainty": {k: v.uncertainty for k, v in fits.items()},
    }


FLOORS_NOTE = (f"memory_ops norm/elementwise/embedding: fixed cost per kernel class fitted on "
               f"Vidur's operator times at <= {SMALL_TOKENS} tokens (bandwidth fixed by STREAM).")


VARIABILITY_NOTE = ("variability.step_cv: pooled run-to-run coefficient of variation of the "
                    "training steps timed on one H100 (calibration/measured/h100/gpu_steps*.json"
                    "); a synchronous job waits for its slowest GPU (sim.setup.paced_compute).")


def with_variability(prof: dict, note: str) -> dict:
    """``prof`` with the step-time spread of the step logs (with their hashes) and ``note``."""
    prof["quality"]["notes"].append(note)
    prof["variability"] = step_variability() | {
        "inputs": [_sha_measured(rel) for rel in STEP_LOGS]}
    return prof


def build_a100() -> dict:
    gpu = catalog.gpu("a100-80gb")
    bw_eff = memory_eff("a100_80gb", gpu)
    colls = a100_collectives()
    prof = _profile(
        "a100", "a100-80gb",
        ["kernels/gemm_cublaslt.csv", "kernels/hbm_stream.csv", "kernels/flashattention2.csv",
         "collectives/azure_a100_8gpu_all_reduce.csv",
         "echo_nccl_tests/azure_a100_40gb_all_reduce_16gpu.log"]
        + [f"echo_nccl_tests/azure_a100_40gb_all_reduce_{n}gpu.log" for n in (2, 4, 8)]
        + [f"echo_nccl_tests/azure_a100_40gb_all_reduce_{n}gpu.log"
           for n in A100_NETWORK_GPUS if n != 16]
        + [f"vidur/compute/{p.name}" for p in sorted((REF / "vidur/compute").glob("a100_*"))],
        {"fp16": gemm_from_cublaslt("a100_fp16_tflops", "fp16", gpu, bw_eff)},
        attention("A100", gpu), bw_eff, memory_launch("a100", gpu, bw_eff), colls,
        ["bf16 GEMMs use the fp16 curve (same tensor-core rate on SM80).", FLOORS_NOTE,
         GPU_SPREAD_NOTE],
        memory_ops_floors("a100", gpu, bw_eff))
    # Between-GPU spread only: there is no A100 step log in the repository (docs/accuracy.md).
    prof["variability"] = gpu_spread() | {"inputs": [reference_sha(GPU_SPREAD)]}
    return prof


def build_h100() -> dict:
    gpu = catalog.gpu("h100-sxm")
    bw_eff = memory_eff("h100", gpu)
    colls = h100_collectives()
    prof = _profile(
        "h100", "h100-sxm",
        ["kernels/gemm_cublaslt.csv", "kernels/hbm_stream.csv", "kernels/flashattention2.csv",
         "collectives/dgx_h100_all_reduce_nvls.csv", "vidur/network/h100_dgx_send_recv.csv",
         H100_NETWORK, H100_RING_POINTS, H100_RING_RAMP]
        + [f"vidur/compute/{p.name}" for p in sorted((REF / "vidur/compute").glob("h100_*"))],
        {"fp16": gemm_from_vidur("h100", gpu, bw_eff),
         "fp8": gemm_from_cublaslt("h100_fp8_tflops", "fp8", gpu, bw_eff)},
        attention("H100", gpu), bw_eff, memory_launch("h100", gpu, bw_eff), colls,
        ["fp16/bf16 GEMM curve fitted on Vidur's H100 transformer GEMMs (no published H100 "
         "fp16 cuBLASLt sweep in the reference set).",
         "network collective curve and fabric network.* fitted on "
         f"{H100_NETWORK} (nccl-tests all_reduce, 4 nodes x 8 H100, 8x 400 Gb/s InfiniBand "
         "per node, NCCL 2.24.3); relative to the NIC bandwidth, which the catalog scales.",
         "nvlink.p2p fitted on vidur/network/h100_dgx_send_recv.csv (2 GPUs of one node, "
         ">= 1 MiB).",
         f"collectives.nvlink_ring (ring collectives inside the node: reduce_scatter, all_gather, "
         f"broadcast, 2-GPU all_reduce): plateau = mean published ring busbw on 8 H100/H200 "
         f"({H100_RING_POINTS}); latency and size ramp fitted on the ring LL sizes of "
         f"{H100_NVLS_SWEEP} (<= 512 KiB, 8 GPUs) and {H100_RING_RAMP} 2 GPUs (>= 8 MiB).",
         FLOORS_NOTE,
         "deepep.nvl_gb_s_per_sm: DeepEP's internode normal kernels on a user's two-node H200 "
         "run (calibration/fit_deepep.py)."],
        memory_ops_floors("h100", gpu, bw_eff))
    from calibration.fit_deepep import FILE, fit_deepep
    prof["inputs"].append(reference_sha(FILE))
    prof["deepep"] = fit_deepep()
    return with_variability(prof, VARIABILITY_NOTE)


def system_variant(a100: dict, name: str, inputs: list[str], note: str) -> dict:
    """The a100 profile with the fabric section fitted on one system's own sweeps
    (every reference sweep whose profile, or ``also_fits``, names ``name``)."""
    from hw_models.profile import parse
    partial = {k: a100[k] for k in ("device", "gemm", "attention", "memory")} | {"name": name}
    fabric = fabric_fits(name, partial)
    keep = {k: v for k, v in a100["quality"].items() if not k.startswith("fabric.")}
    quality = keep | {f"fabric.{k}": v.quality for k, v in fabric.items()}
    quality["notes"] = a100["quality"]["notes"] + [note]
    unc = {k: v for k, v in a100["uncertainty"].items() if not k.startswith("fabric.")}
    out = a100 | {"name": name, "fabric": {k: v.params for k, v in fabric.items()},
                  "inputs": a100["inputs"] + [h for h in map(reference_sha, inputs)
                                              if h not in a100["inputs"]],
                  "quality": quality,
                  "uncertainty": unc | {f"fabric.{k}": v.uncertainty for k, v in fabric.items()}}
    parse(out, source=name)
    return out


def build_a100_ndm(a100: dict) -> dict:
    """Azure NDm A100 v4 (catalog azure-ndm-a100-v4): fabric fitted on that system's own
    nccl-tests sweep (NCCL 2.18.5), whose small-size floor and mid-size bandwidth differ
    from the echo ND A100 v4 logs by up to 40%."""
    return system_variant(
        a100, "a100-ndm-v4", [],
        "fabric fitted on collectives/azure_a100_8gpu_all_reduce.csv only (nvlink); the "
        f"network curve is profile {NETWORK_FROM}'s (no multi-node sweep of this system).")


def build_a100_dgx(a100: dict) -> dict:
    """DGX A100 80GB (catalog dgx-a100): fabric fitted on the A100 80GB node's two
    sources, Azure NDm A100 v4's nccl-tests sweep (8 GPUs, 1 KiB-8 GiB) and Vidur's
    kernel-timed DGX A100 all_reduce (2/4/8 GPUs, 1-64 MiB), which agree with each other
    and not with the 40GB echo logs (docs/fabric.md)."""
    return system_variant(
        a100, "a100-dgx", ["vidur/network/a100_dgx_all_reduce.csv",
                           "vidur/network/a100_dgx_send_recv.csv"],
        "fabric fitted on collectives/azure_a100_8gpu_all_reduce.csv and vidur/network/"
        "a100_dgx_all_reduce.csv (single node, >= 1 MiB), nvlink.p2p on vidur/network/"
        "a100_dgx_send_recv.csv (2 GPUs of one node, >= 1 MiB); the network curve is profile "
        f"{NETWORK_FROM}'s (Vidur's multi-node rows ran on a network far below the "
        "catalog's 8x HDR: 17 GB/s bus bandwidth at 64 MiB on 16 GPUs).")


def build_all() -> list[dict]:
    from calibration.blackwell import build_blackwell
    a100, h100 = build_a100(), build_h100()
    return [a100, build_a100_ndm(a100), build_a100_dgx(a100), h100,
            *build_blackwell(h100, REF, reference_sha)]


def check() -> list[str]:
    """Rebuild every built-in profile and name those that do not match the committed YAML
    (calibration/profile_match.py: within the fit's drift across machines and library
    releases)."""
    from calibration.profile_match import mismatches

    return [prof["name"] for prof in build_all()
            if mismatches(yaml.safe_load(yaml.safe_dump(prof)),
                          yaml.safe_load((OUT / f"{prof['name']}.yaml").read_text()))]


def main(argv: list[str] | None = None) -> int:
    # argparse: --help prints this and an unknown argument exits 2, neither rewrites the profiles
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="without --check: rewrites calibration/profiles/*.yaml")
    ap.add_argument("--check", action="store_true", help="only check that the committed "
                    "profiles regenerate (make validate); write nothing")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    if args.check:                    # make validate: the committed profiles are reproducible
        stale = check()
        print(f"profiles that do not regenerate: {', '.join(stale)}" if stale
              else "every built-in profile regenerates (calibration/profile_match.py)")
        return 1 if stale else 0
    OUT.mkdir(exist_ok=True)
    for prof in build_all():
        path = OUT / f"{prof['name']}.yaml"
        path.write_text(yaml.safe_dump(prof, sort_keys=False, width=100))
        print(f"wrote {path}")
        for k, q in prof["quality"].items():
            if k != "notes":
                print(f"  {k:24s} R2(log)={q['r2_log']:.3f}  median |err| {q['median_abs_err_pct']}%"
                      f"  max {q['max_abs_err_pct']}%  (n={q['n_points']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
