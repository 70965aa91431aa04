"""Closed loop on this CPU: calibrate, run a real DDP GPT step, predict it, compare.

    python benchmarks/closed_loop_cpu.py [--quick] [--repeats 3]

1. Calibrate this CPU as the accelerator: the kernel suite (GEMM grid including this
   GPT's own GEMM shapes, attention, memory ops) with one thread, as each rank runs,
   and gloo all_reduce between 2 local processes; fit a profile (calibration.fit_measured).
2. Run a real small GPT training step with torch DDP (2 processes, gloo, 1 thread each)
   and time it (median of timed steps after warm-up).
3. Predict the same step from the profile: every kernel of forward, backward and the
   SGD update through the compute model, plus DDP's gradient all_reduce through the
   fitted collective curve (gloo on 2 cores does not overlap it with backward, so it
   is added). The op list is built here, not by workloads/training.py (not on main yet).
Prints JSON: measured_step_s, predicted_step_s, error_pct and their spread over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibration.fit_measured import build_profile  # noqa: E402
from calibration.microbench import collectives, kernels  # noqa: E402
from hw_models import catalog  # noqa: E402
from hw_models.compute import ComputeModel  # noqa: E402
from hw_models.profile import device_gpu, parse  # noqa: E402
from sim.network.analytical import bus_factor, curve_time  # noqa: E402

CFG = {"layers": 2, "hidden": 256, "heads": 4, "seq": 128, "batch": 2, "vocab": 2048}


class Block(nn.Module):
    def __init__(self, h: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(h), nn.LayerNorm(h)
        self.qkv, self.proj = nn.Linear(h, 3 * h), nn.Linear(h, h)
        self.up, self.down = nn.Linear(h, 4 * h), nn.Linear(4 * h, h)

    def forward(self, x):                                     # x: (B, S, h)
        b, s, h = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, self.heads, h // self.heads).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           v.transpose(1, 2), is_causal=True)   # (B, nh, S, hd)
        x = x + self.proj(a.transpose(1, 2).reshape(b, s, h))
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.emb = nn.Embedding(c["vocab"], c["hidden"])
        self.pos = nn.Embedding(c["seq"], c["hidden"])
        self.blocks = nn.ModuleList(Block(c["hidden"], c["heads"]) for _ in range(c["layers"]))
        self.ln = nn.LayerNorm(c["hidden"])
        self.head = nn.Linear(c["hidden"], c["vocab"], bias=False)

    def forward(self, idx):
        x = self.emb(idx) + self.pos(torch.arange(idx.shape[1]))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


def _ddp_worker(rank: int, store: str, steps: tuple[int, int], out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(GPT(CFG))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(rank)
    idx = torch.randint(0, CFG["vocab"], (CFG["batch"], CFG["seq"]), generator=gen)
    times = []
    for i in range(sum(steps)):
        dist.barrier()
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(idx).flatten(0, 1), idx.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= steps[0]:
            times.append(time.perf_counter() - t0)
    gathered: list[list[float]] = [[], []]
    dist.all_gather_object(gathered, times)
    if rank == 0:
        Path(out).write_text(json.dumps(np.max(np.array(gathered), axis=0).tolist()))
    dist.destroy_process_group()


def measure_step(steps: tuple[int, int]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "times.json")
        mp.start_processes(_ddp_worker, args=(os.path.join(tmp, "store"), steps, out), nprocs=2,
                           join=True, start_method="spawn")
        return float(np.median(json.loads(Path(out).read_text())))


def step_ops(c: dict) -> list[tuple[str, float, float, dict]]:
    """(op class, FLOPs, bytes, extra) of one rank's training step, fp32 (4-byte) elements.
    Each linear: 1 forward and 2 backward GEMMs of 2 T n k FLOPs (Korthikanti et al.)."""
    t, h, v, eb = c["batch"] * c["seq"], c["hidden"], c["vocab"], 4
    ops: list[tuple[str, float, float, dict]] = []

    def linear(n, k):
        for m_, n_, k_ in ((t, n, k), (t, k, n), (k, n, t)):
            ops.append(("gemm", 2.0 * m_ * n_ * k_, eb * (m_ * k_ + k_ * n_ + m_ * n_), {}))

    def mem(cls, nbytes, times=1):
        ops.extend([(cls, 0.0, float(nbytes), {})] * times)

    att = 4.0 * c["batch"] * c["heads"] * c["seq"] ** 2 * (h // c["heads"]) * 0.5   # causal
    for _ in range(c["layers"]):
        for n, k in ((3 * h, h), (h, h), (4 * h, h), (h, 4 * h)):
            linear(n, k)
        # sdpa forward, backward recomputes scores and does 2 more products: ~2.5x forward.
        ops.append(("attention", att * 3.5, 0.0, {"seq_kv": c["seq"]}))
        mem("norm", 2 * t * h * eb, 2 * 3)              # 2 layernorms, fwd + 2 bwd passes
        mem("elementwise", 2 * t * 4 * h * eb, 3)      # gelu fwd + bwd (reads x and grad)
        mem("elementwise", 3 * t * h * eb, 2 * 2)      # 2 residual adds fwd + grad copies
    linear(v, h)                                       # LM head
    mem("norm", 2 * t * h * eb, 3)                     # final layernorm
    mem("softmax", 2 * t * v * eb, 2)                  # cross-entropy softmax fwd + bwd
    mem("embedding", 2 * t * h * eb, 2)                # token + position lookup fwd/bwd
    return ops


def n_params(c: dict) -> int:
    return sum(p.numel() for p in GPT(c).parameters())


def predict_step(profile_yaml: dict) -> dict[str, float]:
    prof = parse(profile_yaml, "closed-loop")
    gpu = device_gpu(prof, catalog.gpu("cpu"))
    cm = ComputeModel(gpu, prof)
    compute = sum(cm.time(cls, f, b, "fp32", seq_kv=x.get("seq_kv", 0), causal=True)
                  for cls, f, b, x in step_ops(CFG))
    grads = 4.0 * n_params(CFG)
    optimizer = cm.memory_bound(4 * grads, "optimizer")    # SGD reads p, g, writes p (+ zero)
    ar = curve_time(prof.collectives["nvlink"], bus_factor("all_reduce", 2) * grads,
                    gpu.scale_up_gb_s * 1e9)
    return {"compute_s": compute + optimizer, "all_reduce_s": ar, "step_s": compute + optimizer + ar}


def calibrate(out: Path, quick: bool) -> dict:
    h = CFG["hidden"]
    g = kernels.Grid((64, 256, 512), (CFG["batch"] * CFG["seq"], 512), h, 4 * h, (CFG["seq"], 256),
                     CFG["heads"], h // CFG["heads"], tuple(4**i for i in range(7, 12)),
                     2, 5 if quick else 11)
    kpath = kernels.run("cpu", out, grid=g, threads=1)
    # all_reduce up to 16 MiB even when quick: the gradients (~10 MB) must be inside the sweep.
    cpath = collectives.run("cpu", out, 2, quick=False, ops=("all_reduce",))
    return build_profile([kpath, cpath], name="cpu-closed-loop")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    print(json.dumps(closed_loop(a.quick, a.repeats), indent=1))


def closed_loop(quick: bool, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        prof = calibrate(Path(tmp), quick)
    pred = predict_step(prof)
    steps = (1, 3) if quick else (2, 8)
    measured = [measure_step(steps) for _ in range(repeats)]
    errs = [100 * (pred["step_s"] / m - 1) for m in measured]
    return {"measured_step_s": float(np.median(measured)), "predicted_step_s": pred["step_s"],
            "error_pct": float(np.median(errs)), "error_pct_min": min(errs),
            "error_pct_max": max(errs), "measured_step_s_all": measured,
            "predicted_parts_s": pred, "repeats": repeats, "config": CFG}


if __name__ == "__main__":
    main()
