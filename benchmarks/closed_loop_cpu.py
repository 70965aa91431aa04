"""Closed loop on this CPU: calibrate, run a real DDP GPT step, predict it, compare.

    python benchmarks/closed_loop_cpu.py [--quick] [--repeats 3] [--ablate hot|unblocked|solo]

Each repeat, back to back (the 2 cores are shared, so both halves see the same load):
1. Calibrate this CPU as the accelerator: the kernel suite (GEMMs in this GPT's own
   shapes and autograd's operand layouts, attention forward and backward, the step's
   memory-bound ops) in 2 processes of 1 thread at once, exactly as the 2 DDP ranks run,
   and gloo all_reduce between 2 local processes; fit a profile (calibration.fit_measured).
2. Run a real small GPT training step with torch DDP (2 processes, gloo, 1 thread each)
   and time it (median of timed steps after warm-up, slowest rank).
3. Predict the same step from the profile: every kernel of forward, backward, DDP's
   reducer copies and the SGD update through the compute model (one fitted per-call
   overhead each), plus DDP's gradient buckets through the fitted all_reduce curve.
Prints JSON: measured_step_s, predicted_step_s, error_pct (median over repeats) with the
mean, min and max error and every run's parts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibration.fit_measured import build_profile  # noqa: E402
from calibration.microbench import collectives, kernels  # noqa: E402
from calibration.microbench.common import write_csv  # noqa: E402
from calibration.microbench.kernels import BWD_FLOPS  # noqa: E402
from hw_models import catalog  # noqa: E402
from hw_models.compute import ComputeModel  # noqa: E402
from hw_models.profile import device_gpu, parse  # noqa: E402
from sim.network.analytical import bus_factor, curve_time  # noqa: E402

CFG = {"layers": 2, "hidden": 256, "heads": 4, "seq": 128, "batch": 2, "vocab": 2048}
RANKS, THREADS = 2, 1        # DDP processes and torch threads per process, as calibrated
# Kernel samples are blocks of calls this long: longer than a CFS time slice (a few ms),
# so time slicing with other jobs on the 2 shared cores is averaged in (common.time_fn).
BLOCK_S = 0.02
# Kernel operands rotate through copies this large in all (> the 2 MiB L2 per core, like
# the step's ~40 MB of weights, grads and activations): each call reads uncached data.
COLD_BYTES = 64 * 2**20
N_BOOT = 20                  # the prediction uses the point fit; a small bootstrap is enough


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


# Ablations (--ablate NAME): calibrate without one of the measures above, to show what
# each is worth. "solo": the kernel suite in one process while the other rank waits.
ABLATIONS = ("none", "hot", "unblocked", "solo")


def _grid(quick: bool, ablate: str = "none") -> kernels.Grid:
    """The kernel grid on this GPT's own shapes (GEMMs of its layer, its attention, its
    tensor sizes: 16K .. 1M elements; the logits are 512K)."""
    h, t = CFG["hidden"], CFG["batch"] * CFG["seq"]
    squares, numels = ((64, 512), (4**7, 4**9, 4**10)) if quick else \
        ((64, 256, 512), tuple(4**i for i in range(6, 11)))
    return kernels.Grid(squares, (t,), h, 4 * h, (CFG["seq"], 2 * CFG["seq"]), CFG["heads"],
                        h // CFG["heads"], numels, 2, 3 if quick else 7,
                        0.0 if ablate == "unblocked" else BLOCK_S,
                        0 if ablate == "hot" else COLD_BYTES)


# all_reduce sizes (bytes): around DDP's two gradient buckets here (2 MB and 8.6 MB).
AR_SIZES = {True: tuple(1024 * 4**i for i in (0, 3, 5, 6, 7)),   # 1 KiB, 64 KiB .. 16 MiB
            False: tuple(1024 * 4**i for i in range(8))}


def _ddp_steps(steps: tuple[int, int]) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of the timed DDP training steps on this rank (barrier before
    each; CPU = this process's CPU time, all its threads, gloo's included)."""
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(GPT(CFG))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(dist.get_rank())
    idx = torch.randint(0, CFG["vocab"], (CFG["batch"], CFG["seq"]), generator=gen)
    times = []
    for i in range(sum(steps)):
        dist.barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        loss = F.cross_entropy(model(idx).flatten(0, 1), idx.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= steps[0]:
            times.append((time.perf_counter() - t0, time.process_time() - c0))
    return times


def _kernel_rows(quick: bool, ablate: str, dev: torch.device) -> list[dict]:
    with torch.inference_mode():
        if ablate != "solo":
            return kernels.lockstep_suite(_grid(quick, ablate), dev, ("fp32",))
        rows = kernels.suite(_grid(quick, ablate), dev, ("fp32",)) if dist.get_rank() == 0 else []
    box = [rows]
    dist.broadcast_object_list(box, src=0)
    return [r | {"procs": 1} for r in box[0]]


def _worker(rank: int, store: str, quick: bool, repeats: int, out: str, ablate: str) -> None:
    """Per repeat, back to back in the same 2 processes: calibrate kernels (lockstep),
    the all_reduce sweep, then the real DDP step. Rank 0 writes the CSVs and times."""
    torch.set_num_threads(THREADS)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=RANKS)
    dev = torch.device("cpu")
    for r in range(repeats):
        krows = _kernel_rows(quick, ablate, dev)
        crows = collectives.sweep(("all_reduce",), dev, quick,
                                  0.0 if ablate == "unblocked" else BLOCK_S, AR_SIZES[quick])
        times = _ddp_steps((1, 4) if quick else (3, 10))
        gathered: list[list[tuple[float, float]]] = [[] for _ in range(RANKS)]
        dist.all_gather_object(gathered, times)
        if rank == 0:
            write_csv(krows, Path(out) / f"r{r}" / "kernels_cpu.csv")
            write_csv(crows, Path(out) / f"r{r}" / f"collectives_cpu_{RANKS}r.csv")
            step = np.max(np.array(gathered), axis=0)        # the slowest rank sets the step
            (Path(out) / f"r{r}" / "steps.json").write_text(json.dumps(
                {"wall": step[:, 0].tolist(), "cpu": step[:, 1].tolist()}))
    dist.barrier()           # no rank tears gloo down while another still uses it
    dist.destroy_process_group()


def run_repeats(out: Path, quick: bool, repeats: int, ablate: str = "none") -> None:
    """Spawn the 2 ranks; once more, from scratch, if a rank is killed by a signal (gloo
    has aborted a rank of a loaded machine mid-run: SIGABRT, "terminate called without
    an active exception"). A second death is raised. Nothing of a dead run is kept."""
    for attempt in (1, 2):
        try:
            mp.start_processes(_worker, args=(str(out / f"store{attempt}"), quick, repeats,
                                              str(out), ablate),
                               nprocs=RANKS, join=True, start_method="spawn")
            return
        except mp.ProcessExitedException as exc:
            if attempt == 2 or exc.signal_name is None:
                raise
            print(f"closed loop: a rank died ({exc}); running again", file=sys.stderr)


Op = tuple[str, str, float, float, dict]     # (group, op class, FLOPs, bytes, extra)


def step_ops(c: dict) -> list[Op]:
    """Every kernel of one rank's training step, fp32, as torch runs it on a CPU (the list
    was read off torch.profiler of the real step, see docs/calibration.md). Each kernel is
    one call, so the fitted per-call overhead (launch_us) is paid once per call.
    Linear: forward + input- and weight-gradient GEMMs of 2 T n k FLOPs each
    (Korthikanti et al. 2022)."""
    t, h, v, eb = c["batch"] * c["seq"], c["hidden"], c["vocab"], 4
    ops: list[Op] = []

    def linear(n, k, bias=True):
        for m_, n_, k_ in ((t, n, k), (t, k, n), (n, k, t)):
            ops.append(("gemm", "gemm", 2.0 * m_ * n_ * k_, eb * (m_ * k_ + k_ * n_ + m_ * n_), {}))
        if bias:                                       # bias gradient: a sum over the tokens
            ops.append(("elementwise", "elementwise", 0.0, eb * (t * n + n), {}))

    def mem(group, cls, numel, moved, times=1):
        ops.extend([(group, cls, 0.0, float(moved * numel * eb), {})] * times)

    att = 4.0 * c["batch"] * c["heads"] * c["seq"] ** 2 * (h // c["heads"]) * 0.5   # causal
    mem("embedding", "elementwise", t * h, 2, 2)       # token + position lookups
    mem("elementwise", "elementwise", t * h, 3)        # their sum
    for _ in range(c["layers"]):
        for n, k in ((3 * h, h), (h, h), (4 * h, h), (h, 4 * h)):
            linear(n, k)
        ops.append(("attention", "attention", att, 0.0, {"seq_kv": c["seq"]}))
        ops.append(("attention", "attention", att * BWD_FLOPS, 0.0, {"seq_kv": c["seq"]}))
        mem("norm", "norm", t * h, 2, 2)               # 2 layernorms forward
        mem("norm", "norm", t * h, 3, 2)               # and backward (x, dy -> dx)
        mem("elementwise", "elementwise", t * 4 * h, 2)   # gelu forward
        mem("elementwise", "elementwise", t * 4 * h, 3)   # gelu backward (x, dy -> dx)
        mem("elementwise", "elementwise", t * h, 3, 2)    # 2 residual adds forward
        mem("elementwise", "elementwise", t * h, 3, 2)    # their gradients accumulated
        mem("elementwise", "memcpy", t * h, 2, 2)         # attention out -> (B,S,h), and back
        mem("elementwise", "memcpy", t * 3 * h, 2)        # q/k/v gradients concatenated
    linear(v, h, bias=False)                           # LM head
    mem("norm", "norm", t * h, 2)
    mem("norm", "norm", t * h, 3)
    mem("loss", "loss", t * v, 2)                      # cross-entropy: log-softmax forward
    mem("loss", "loss", t * v, 3)                      # and its backward
    mem("embedding", "memcpy", (v + c["seq"]) * h, 1, 1)   # embedding grads: zeroed tables
    mem("embedding", "elementwise", t * h, 3, 2)           # + scattered token rows
    return ops


def param_sizes(c: dict) -> list[int]:
    return [p.numel() for p in GPT(c).parameters()]


def ddp_ops(c: dict) -> tuple[list[Op], list[int]]:
    """Per-parameter work DDP's reducer and SGD add to the step, and the all_reduce buckets
    (bytes) as DDP assigns them (first bucket 1 MiB, then 25 MiB, reverse parameter order)."""
    sizes, eb = param_sizes(c), 4
    ops: list[Op] = []
    for n in sizes:
        ops.append(("ddp", "elementwise", 0.0, 2.0 * n * eb, {}))   # grad * 1/world -> bucket
        ops.append(("ddp", "memcpy", 0.0, 2.0 * n * eb, {}))        # bucket -> grad
        ops.append(("optimizer", "elementwise", 0.0, 3.0 * n * eb, {}))   # SGD p -= lr g
    params = [torch.empty(n) for n in sizes][::-1]
    buckets, _ = dist._compute_bucket_assignment_by_size(
        params, [dist._DEFAULT_FIRST_BUCKET_BYTES, 25 * 2**20])
    return ops, [sum(params[i].numel() * eb for i in b) for b in buckets]


def predict_step(profile_yaml: dict) -> dict[str, float]:
    """Per group seconds and their sum. gloo on 2 shared cores does not overlap the
    all_reduce with backward (its thread needs the cores backward is using): added."""
    prof = parse(profile_yaml, "closed-loop")
    gpu = device_gpu(prof, catalog.gpu("cpu"))
    cm = ComputeModel(gpu, prof)
    extra, buckets = ddp_ops(CFG)
    parts: dict[str, float] = {}
    for group, cls, f, b, x in step_ops(CFG) + extra:
        dt = cm.time(cls, f, b, "fp32", seq_kv=x.get("seq_kv", 0), causal=True)
        parts[group] = parts.get(group, 0.0) + dt
    parts["all_reduce"] = sum(curve_time(prof.collectives["nvlink"], bus_factor("all_reduce", 2) * nb,
                                         gpu.scale_up_gb_s * 1e9) for nb in buckets)
    return parts | {"step_s": sum(parts.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ablate", choices=ABLATIONS, default="none")
    a = ap.parse_args()
    print(json.dumps(closed_loop(a.quick, a.repeats, a.ablate), indent=1))


def cpu_clock_copy(folder: Path) -> list[Path]:
    """The repeat's CSVs with median_s replaced by the CPU-time median (cpu_median_s)."""
    out = []
    for name in ("kernels_cpu.csv", f"collectives_cpu_{RANKS}r.csv"):
        df = pd.read_csv(folder / name)
        df["median_s"] = df["cpu_median_s"]
        (folder / "cpu").mkdir(exist_ok=True)
        df.to_csv(folder / "cpu" / name, index=False)
        out.append(folder / "cpu" / name)
    return out


def one_run(folder: Path) -> dict:
    """Fit the repeat's profiles on its CSVs (wall clock, and CPU time), predict the step,
    compare each with the step timed on the same clock."""
    steps = json.loads((folder / "steps.json").read_text())
    out = {}
    wall_csvs = [folder / "kernels_cpu.csv", folder / f"collectives_cpu_{RANKS}r.csv"]
    for clock, csvs in (("wall", wall_csvs), ("cpu", cpu_clock_copy(folder))):
        pred = predict_step(build_profile(csvs, name=f"cpu-closed-loop-{clock}", n_boot=N_BOOT))
        measured = float(np.median(steps[clock]))
        out[clock] = {"measured_step_s": measured, "predicted_step_s": pred["step_s"],
                      "error_pct": 100 * (pred["step_s"] / measured - 1), "predicted_parts_s": pred}
    return out


def _stats(runs: list[dict], clock: str) -> dict:
    errs = [r[clock]["error_pct"] for r in runs]
    return {"measured_step_s": float(np.median([r[clock]["measured_step_s"] for r in runs])),
            "predicted_step_s": float(np.median([r[clock]["predicted_step_s"] for r in runs])),
            "error_pct": float(np.median(errs)), "error_pct_mean": float(np.mean(errs)),
            "error_pct_min": min(errs), "error_pct_max": max(errs)}


def closed_loop(quick: bool, repeats: int, ablate: str = "none") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_repeats(Path(tmp), quick, repeats, ablate)
        runs = [one_run(Path(tmp) / f"r{r}") for r in range(repeats)]
    return _stats(runs, "wall") | {"cpu_clock": _stats(runs, "cpu"), "runs": runs,
                                   "repeats": repeats, "ablate": ablate, "threads_per_rank": THREADS,
                                   "ranks": RANKS, "config": CFG}


if __name__ == "__main__":
    main()
