"""Kernel microbenchmarks through torch: GEMM, fused attention, memory-bound ops.

    python -m calibration.microbench.kernels --device cpu --out DIR [--quick] [--procs 2]

Grids: square GEMMs plus the GEMM shapes of a transformer layer (forward and the two
backward products, in the operand layouts autograd uses) for a few token counts;
``scaled_dot_product_attention`` over sequence lengths; the memory-bound ops of a
training step (copy, add, mul, gelu, layernorm, softmax, log-softmax forward and
backward) over tensor sizes. FLOPs and bytes are written next to each time so the fit
never has to re-derive them.

``procs > 1`` runs the suite in that many processes at once, in lockstep (a barrier
before every point), and keeps per sample the slowest process: on a CPU the ranks of a
data-parallel job share the cores, caches and memory bandwidth, so a kernel timed alone
is faster than the same kernel while the other ranks run theirs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from calibration.microbench.common import DTYPES, check_device, meta, summary, time_fn, write_csv
from hw_models.errors import ClusterSimError


@dataclass(frozen=True)
class Grid:
    squares: tuple[int, ...]
    tokens: tuple[int, ...]
    hidden: int
    ffn: int
    seqs: tuple[int, ...]
    heads: int
    head_dim: int
    numels: tuple[int, ...]
    warmup: int
    reps: int
    block_s: float = 0.0     # CPU: time blocks of calls this long (common.time_fn)
    cold_bytes: int = 0      # >0: rotate through operand copies this large in all (_Rotation)
    decode: tuple[int, ...] = ()   # token counts of decode GEMMs (the layer's forward linears)


# Sized for ~1 minute on a 2-core CPU (default) and a few seconds (quick). On a GPU the
# full grid is the transformer range Vidur profiles (tokens up to 4k, hidden up to 8k).
GRIDS = {
    ("cpu", False): Grid((64, 128, 256, 512, 1024), (128, 256, 512), 256, 1024,
                         (128, 256, 512), 4, 64, tuple(4**i for i in range(7, 13)), 3, 15),
    ("cpu", True): Grid((64, 256), (128,), 128, 512, (128,), 2, 64, (4**7, 4**9, 4**11), 1, 3),
    # GPU operands rotate through 256 MiB (> the 40-50 MB L2 of A100/H100), so each call
    # reads its weights from HBM as a layer's GEMMs do in a step; decode GEMMs at 1-128
    # tokens are the serving shapes (memory-bound: they fit the GEMMs' bandwidth).
    ("cuda", False): Grid((256, 512, 1024, 2048, 4096, 8192), (256, 1024, 4096, 16384), 4096,
                          16384, (512, 1024, 2048, 4096, 8192), 32, 128,
                          tuple(4**i for i in range(9, 15)), 10, 30, cold_bytes=256 * 2**20,
                          decode=(1, 8, 32, 128)),
    ("cuda", True): Grid((512, 2048), (1024,), 1024, 4096, (1024,), 8, 128, (4**10, 4**12), 3, 5,
                         decode=(8,)),
}


Sync = Callable[[], None]


def _no_sync() -> None:
    return None


def transformer_gemms(tokens: int, hidden: int, ffn: int) -> list[tuple[int, int, int, str]]:
    """(m, n, k, layout) of one GPT layer's GEMMs: forward, then the input- and
    weight-gradient products of backward (Korthikanti et al. 2022, 3 GEMMs per linear).
    layout says which operand is a transposed view, as nn.Linear and autograd call them:
    forward x @ W^T ("nt"), input gradient dY @ W ("nn"), weight gradient dY^T @ x ("tn")."""
    linears = [(3 * hidden, hidden), (hidden, hidden), (ffn, hidden), (hidden, ffn)]
    shapes = []
    for out, inp in linears:
        shapes += [(tokens, out, inp, "nt"), (tokens, inp, out, "nn"), (out, inp, tokens, "tn")]
    return shapes


def gemm_shapes(g: Grid) -> list[tuple[int, int, int, str]]:
    shapes = [(s, s, s, "nn") for s in g.squares]
    for t in g.tokens:
        shapes += transformer_gemms(t, g.hidden, g.ffn)
    for t in g.decode:   # serving's decode: few tokens against whole weight matrices
        shapes += [s for s in transformer_gemms(t, g.hidden, g.ffn) if s[3] == "nt"]
    return list(dict.fromkeys(shapes))


def _operands(m: int, n: int, k: int, layout: str, dev, td) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.randn(k, m, device=dev, dtype=td).t() if layout[0] == "t" else \
        torch.randn(m, k, device=dev, dtype=td)
    b = torch.randn(n, k, device=dev, dtype=td).t() if layout[1] == "t" else \
        torch.randn(k, n, device=dev, dtype=td)
    return a, b


class _Rotation:
    """Calls ``fn`` on the next of several copies of its operands, so that the copies
    together (``cold_bytes``) exceed the private caches: in a training step each tensor is
    touched once per pass and comes from the shared cache or memory, whereas one operand
    set timed in a loop stays in L1/L2 and runs faster than the step ever sees."""

    def __init__(self, make: Callable[[], tuple], cold_bytes: int):
        first = make()
        size = sum(t.numel() * t.element_size() for t in first)
        self.sets = [first] + [make() for _ in range(max(0, -(-cold_bytes // size) - 1))]
        self.i = 0

    def __call__(self, fn: Callable) -> object:
        self.i = (self.i + 1) % len(self.sets)
        return fn(*self.sets[self.i])


def _gemm_rows(g: Grid, dev: torch.device, dtype: str, sync: Sync = _no_sync) -> list[dict]:
    rows, td, eb = [], DTYPES[dtype], torch.finfo(DTYPES[dtype]).bits // 8
    for m, n, k, layout in gemm_shapes(g):
        rot = _Rotation(lambda m=m, n=n, k=k, layout=layout: _operands(m, n, k, layout, dev, td),
                        g.cold_bytes)
        sync()
        cpu: list[float] = []
        samples = time_fn(lambda rot=rot: rot(torch.mm), dev, g.warmup, g.reps, g.block_s, cpu)
        rows.append({"op_class": "gemm", "op": "gemm", "dtype": dtype, "m": m, "n": n, "k": k,
                     "layout": layout, "flops": 2.0 * m * n * k,
                     "bytes": float(eb * (m * k + k * n + m * n)), **summary(samples, cpu)})
    return rows


# FlashAttention-2 (Dao 2023, sec. 3.1): the backward pass does 5 matmuls to the forward's
# 2, of which one recomputes QK^T: 2.5x the forward FLOPs.
BWD_FLOPS = 2.5


def _sdpa_backward(q, k, v, causal: bool):
    """A callable running only the backward of one attention call (graph kept)."""
    with torch.inference_mode(False), torch.enable_grad():
        q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        dy = torch.randn_like(out)
    return lambda: torch.autograd.grad(out, (q, k, v), dy, retain_graph=True)


def _attention_rows(g: Grid, dev: torch.device, dtype: str, sync: Sync = _no_sync) -> list[dict]:
    rows, td, eb = [], DTYPES[dtype], torch.finfo(DTYPES[dtype]).bits // 8
    for s in g.seqs:
        q, k, v = (torch.randn(1, g.heads, s, g.head_dim, device=dev, dtype=td) for _ in range(3))
        for causal in (True, False):
            def call(q=q, k=k, v=v, causal=causal):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            # QK^T and PV: 2 GEMMs of 2 s^2 d FLOPs per head; causal does half the work.
            flops = 4.0 * g.heads * s * s * g.head_dim * (0.5 if causal else 1.0)
            for op, fn, mult in (("sdpa", call, 1.0),
                                 ("sdpa_bwd", _sdpa_backward(q, k, v, causal), BWD_FLOPS)):
                sync()
                cpu: list[float] = []
                samples = time_fn(fn, dev, g.warmup, g.reps, g.block_s, cpu)
                rows.append({"op_class": "attention", "op": op, "dtype": dtype, "seq": s,
                             "heads": g.heads, "head_dim": g.head_dim, "causal": causal,
                             "flops": flops * mult, "bytes": float(4 * eb * g.heads * s * g.head_dim),
                             **summary(samples, cpu)})
    return rows


def _log_softmax_bwd(x, y, out):
    # The cross-entropy backward's big kernel: grad_in = dy - exp(logp) * sum(dy).
    return torch.ops.aten._log_softmax_backward_data(y, out, -1, x.dtype)


# (op, callable on (x, y, out), tensors moved per element): bytes = moved * numel * elem_bytes.
# Out-of-place ops allocate their result as autograd's forward and backward do.
MEMORY_OPS = {
    "copy": (lambda x, y, out: out.copy_(x), 2),
    "add": (lambda x, y, out: torch.add(x, y, out=out), 3),
    "mul": (lambda x, y, out: x * y, 3),
    "gelu": (lambda x, y, out: F.gelu(x), 2),
    "layernorm": (lambda x, y, out: F.layer_norm(x, x.shape[-1:]), 2),
    "softmax": (lambda x, y, out: torch.softmax(x, dim=-1), 2),
    "log_softmax": (lambda x, y, out: torch.log_softmax(x, dim=-1), 2),
    "log_softmax_bwd": (_log_softmax_bwd, 3),
}


def _memory_rows(g: Grid, dev: torch.device, dtype: str, sync: Sync = _no_sync) -> list[dict]:
    rows, td, eb = [], DTYPES[dtype], torch.finfo(DTYPES[dtype]).bits // 8
    for numel in g.numels:
        width = min(numel, 1024)   # rows of 1024 elements: a transformer hidden-sized row

        def make(numel=numel, width=width):
            x, y, out = (torch.randn(numel // width, width, device=dev, dtype=td) for _ in range(3))
            return x, y, torch.log_softmax(out, dim=-1)   # a valid log-probability (backward)
        rot = _Rotation(make, g.cold_bytes)
        for name, (fn, moved) in MEMORY_OPS.items():
            sync()
            cpu: list[float] = []
            samples = time_fn(lambda fn=fn, rot=rot: rot(fn), dev, g.warmup, g.reps, g.block_s, cpu)
            rows.append({"op_class": "memory", "op": name, "dtype": dtype, "numel": numel,
                         "flops": 0.0, "bytes": float(moved * numel * eb), **summary(samples, cpu)})
    return rows


# Mixed-precision Adam per parameter: torch's fused Adam reads the fp32 master, grad, m and v
# (16 B) and writes master, m and v (12 B); the 16-bit weights are then copied from the
# master (4 B read, 2 B written). Megatron-LM's step moves the same 34 B per parameter
# (workloads/param_sync.py ADAM_BYTES_PER_PARAM: it writes the copy itself, reads the grad
# again for the norm). Tensors of 1/8 of the parameters each, as a model has many.
ADAM_BYTES = 16 + 12 + 4 + 2
ADAM_TENSORS = 8


def _optimizer_rows(g: Grid, dev: torch.device, dtype: str, sync: Sync = _no_sync) -> list[dict]:
    rows = []
    for numel in g.numels:
        n = max(1, numel // ADAM_TENSORS)
        master = [torch.randn(n, device=dev) for _ in range(ADAM_TENSORS)]
        weights = [p.to(DTYPES[dtype]) for p in master]
        for p in master:
            p.grad = torch.randn_like(p)
        opt = torch.optim.Adam(master, lr=1e-4, fused=True)

        def step(opt=opt, weights=weights, master=master):
            opt.step()
            torch._foreach_copy_(weights, master)
        sync()
        cpu: list[float] = []
        samples = time_fn(step, dev, g.warmup, g.reps, g.block_s, cpu)
        rows.append({"op_class": "memory", "op": "adam", "dtype": dtype, "numel": n * ADAM_TENSORS,
                     "flops": 0.0, "bytes": float(ADAM_BYTES * n * ADAM_TENSORS),
                     **summary(samples, cpu)})
    return rows


def suite(g: Grid, dev: torch.device, dtypes: tuple[str, ...], sync: Sync = _no_sync) -> list[dict]:
    """This process's rows of the suite; ``sync`` is called before every point."""
    base = meta("kernels", dev)
    rows = []
    with torch.inference_mode():
        for dt in dtypes:
            for part in (_gemm_rows, _attention_rows, _memory_rows, _optimizer_rows):
                rows += [base | r for r in part(g, dev, dt, sync)]
    return rows


def merge_ranks(per_rank: list[list[dict]]) -> list[dict]:
    """One row per point: per sample the slowest rank (all ranks ran the same points)."""
    out = []
    for rows in zip(*per_rank, strict=True):
        samples = np.max([[float(v) for v in r["samples_s"].split(";")] for r in rows], axis=0)
        row = rows[0] | summary(samples.tolist()) | {"procs": len(rows)}
        if "cpu_median_s" in row:
            row["cpu_median_s"] = max(r["cpu_median_s"] for r in rows)
        out.append(row)
    return out


def _worker(rank: int, n: int, device: str, store: str, g: Grid, dtypes: tuple[str, ...],
            threads: int | None, out_csv: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=n)
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device if device == "cpu" else f"cuda:{rank}")
    rows = lockstep_suite(g, dev, dtypes)
    if rank == 0:
        write_csv(rows, Path(out_csv))
    dist.barrier()           # no rank tears gloo down while another still uses it
    dist.destroy_process_group()


def lockstep_suite(g: Grid, dev: torch.device, dtypes: tuple[str, ...]) -> list[dict]:
    """Every rank of an initialised process group runs the suite at once; all get the
    merged rows (per sample the slowest rank)."""
    rows = suite(g, dev, dtypes, dist.barrier)
    gathered: list[list[dict]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, rows)
    return merge_ranks(gathered)


def run(device: str, out: Path, quick: bool = False, dtypes: tuple[str, ...] | None = None,
        grid: Grid | None = None, threads: int | None = None, procs: int = 1) -> Path:
    """Run the kernel suite; returns the CSV path (``out/kernels_<device>.csv``).
    ``threads`` pins torch's intra-op threads and ``procs`` runs that many copies at once
    (a closed loop calibrates with the ranks and threads its training job will use)."""
    dev = check_device(device)
    dtypes = dtypes or (("fp32",) if dev.type == "cpu" else ("bf16",))
    bad = [d for d in dtypes if d not in DTYPES]
    if bad:
        raise ClusterSimError(f"dtype {bad[0]!r} is not supported; allowed: {', '.join(DTYPES)}")
    if procs < 1 or (dev.type == "cuda" and procs > torch.cuda.device_count()):
        raise ClusterSimError(f"procs must be 1..{torch.cuda.device_count() if dev.type == 'cuda' else 'N'}"
                              f", got {procs}")
    g = grid or GRIDS[(dev.type, quick)]
    out_csv = Path(out) / f"kernels_{dev.type}.csv"
    if procs == 1:
        if threads:
            torch.set_num_threads(threads)
        return write_csv([r | {"procs": 1} for r in suite(g, dev, dtypes)], out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = (procs, device, os.path.join(tmp, "store"), g, tuple(dtypes), threads, str(out_csv))
        mp.start_processes(_worker, args=args, nprocs=procs, join=True, start_method="spawn")
    return out_csv


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="calib_out")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    print(run(a.device, Path(a.out), a.quick, threads=a.threads, procs=a.procs))
