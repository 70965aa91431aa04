"""Kernel microbenchmarks through torch: GEMM, fused attention, memory-bound ops.

    python -m calibration.microbench.kernels --device cpu --out DIR [--quick]

Grids: square GEMMs plus the GEMM shapes of a transformer layer (forward and the two
backward products) for a few token counts; ``scaled_dot_product_attention`` over
sequence lengths; copy/add/layernorm/softmax over tensor sizes. FLOPs and bytes are
written next to each time so the fit never has to re-derive them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
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


# Sized for ~1 minute on a 2-core CPU (default) and a few seconds (quick). On a GPU the
# full grid is the transformer range Vidur profiles (tokens up to 4k, hidden up to 8k).
GRIDS = {
    ("cpu", False): Grid((64, 128, 256, 512, 1024), (128, 256, 512), 256, 1024,
                         (128, 256, 512), 4, 64, tuple(4**i for i in range(7, 13)), 3, 15),
    ("cpu", True): Grid((64, 256), (128,), 128, 512, (128,), 2, 64, (4**7, 4**9, 4**11), 1, 3),
    ("cuda", False): Grid((256, 512, 1024, 2048, 4096, 8192), (256, 1024, 4096, 16384), 4096,
                          16384, (512, 1024, 2048, 4096, 8192), 32, 128,
                          tuple(4**i for i in range(9, 15)), 10, 30),
    ("cuda", True): Grid((512, 2048), (1024,), 1024, 4096, (1024,), 8, 128, (4**10, 4**12), 3, 5),
}


def transformer_gemms(tokens: int, hidden: int, ffn: int) -> list[tuple[int, int, int]]:
    """(m, n, k) of one GPT layer's GEMMs: forward, then the input- and weight-gradient
    products of backward (Korthikanti et al. 2022, 3 GEMMs per linear)."""
    linears = [(3 * hidden, hidden), (hidden, hidden), (ffn, hidden), (hidden, ffn)]
    shapes = []
    for out, inp in linears:
        shapes += [(tokens, out, inp), (tokens, inp, out), (inp, out, tokens)]
    return shapes


def gemm_shapes(g: Grid) -> list[tuple[int, int, int]]:
    shapes = [(s, s, s) for s in g.squares]
    for t in g.tokens:
        shapes += transformer_gemms(t, g.hidden, g.ffn)
    return list(dict.fromkeys(shapes))


def _gemm_rows(g: Grid, dev: torch.device, dtype: str) -> list[dict]:
    rows, td, eb = [], DTYPES[dtype], torch.finfo(DTYPES[dtype]).bits // 8
    for m, n, k in gemm_shapes(g):
        a = torch.randn(m, k, device=dev, dtype=td)
        b = torch.randn(k, n, device=dev, dtype=td)
        samples = time_fn(lambda a=a, b=b: torch.mm(a, b), dev, g.warmup, g.reps)
        rows.append({"op_class": "gemm", "op": "gemm", "dtype": dtype, "m": m, "n": n, "k": k,
                     "flops": 2.0 * m * n * k, "bytes": float(eb * (m * k + k * n + m * n)),
                     **summary(samples)})
    return rows


def _attention_rows(g: Grid, dev: torch.device, dtype: str) -> list[dict]:
    rows, td, eb = [], DTYPES[dtype], torch.finfo(DTYPES[dtype]).bits // 8
    for s in g.seqs:
        q, k, v = (torch.randn(1, g.heads, s, g.head_dim, device=dev, dtype=td) for _ in range(3))
        for causal in (True, False):
            def call(q=q, k=k, v=v, causal=causal):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            samples = time_fn(call, dev, g.warmup, g.reps)
            # QK^T and PV: 2 GEMMs of 2 s^2 d FLOPs per head; causal does half the work.
            flops = 4.0 * g.heads * s * s * g.head_dim * (0.5 if causal else 1.0)
            rows.append({"op_class": "attention", "op": "sdpa", "dtype": dtype, "seq": s,
                         "heads": g.heads, "head_dim": g.head_dim, "causal": causal,
                         "flops": flops, "bytes": float(4 * eb * g.heads * s * g.head_dim),
                         **summary(samples)})
    return rows


# (op, callable on (x, y), tensors moved per element): bytes = moved * numel * elem_bytes.
MEMORY_OPS = {
    "copy": (lambda x, y, out: out.copy_(x), 2),
    "add": (lambda x, y, out: torch.add(x, y, out=out), 3),
    "layernorm": (lambda x, y, out: F.layer_norm(x, x.shape[-1:]), 2),
    "softmax": (lambda x, y, out: torch.softmax(x, dim=-1), 2),
}


def _memory_rows(g: Grid, dev: torch.device, dtype: str) -> list[dict]:
    rows, td, eb = [], DTYPES[dtype], torch.finfo(DTYPES[dtype]).bits // 8
    for numel in g.numels:
        width = min(numel, 1024)   # rows of 1024 elements: a transformer hidden-sized row
        x, y, out = (torch.randn(numel // width, width, device=dev, dtype=td) for _ in range(3))
        for name, (fn, moved) in MEMORY_OPS.items():
            samples = time_fn(lambda fn=fn, x=x, y=y, out=out: fn(x, y, out), dev, g.warmup, g.reps)
            rows.append({"op_class": "memory", "op": name, "dtype": dtype, "numel": numel,
                         "flops": 0.0, "bytes": float(moved * numel * eb), **summary(samples)})
    return rows


def run(device: str, out: Path, quick: bool = False, dtypes: tuple[str, ...] | None = None,
        grid: Grid | None = None, threads: int | None = None) -> Path:
    """Run the kernel suite; returns the CSV path (``out/kernels_<device>.csv``).
    ``threads`` pins torch's intra-op threads (a closed loop calibrates with the thread
    count each training rank will use)."""
    dev = check_device(device)
    if threads:
        torch.set_num_threads(threads)
    dtypes = dtypes or (("fp32",) if dev.type == "cpu" else ("bf16",))
    bad = [d for d in dtypes if d not in DTYPES]
    if bad:
        raise ClusterSimError(f"dtype {bad[0]!r} is not supported; allowed: {', '.join(DTYPES)}")
    g = grid or GRIDS[(dev.type, quick)]
    base = meta("kernels", dev)
    rows = []
    with torch.inference_mode():
        for dt in dtypes:
            for part in (_gemm_rows, _attention_rows, _memory_rows):
                rows += [base | r for r in part(g, dev, dt)]
    return write_csv(rows, Path(out) / f"kernels_{dev.type}.csv")


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="calib_out")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    print(run(a.device, Path(a.out), a.quick))
