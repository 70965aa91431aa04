"""Closed loop on a real GPU: time real GPT training steps on one GPU, predict them.

    python benchmarks/gpu_step.py --measure --out calibration/measured/h100   # on the GPU
    python benchmarks/gpu_step.py [--profile h100-measured]                   # anywhere

``--measure`` builds each GPT of ``CONFIGS`` in torch the way Megatron-LM runs it on one
GPU (pre-LayerNorm blocks with biases, fused causal attention through
scaled_dot_product_attention, GELU MLP of 4h, dropout 0.1 on the residual branches, learned
positions, tied embeddings, fp32 cross-entropy over bf16 logits; bf16 weights with fp32
main gradients, fp32 master weights and fused Adam) and times whole steps (forward,
backward, gradient copy, optimizer, weight copy-back) with CUDA events: median of timed
steps after warm-up. It writes ``gpu_steps.json`` with the device and versions.

Without ``--measure`` it reads that file and predicts every step with the simulator on a
one-GPU system of the measured GPU (the same model, batch and precision), from the chosen
profile, and prints predicted vs measured and the error per row.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MEASURED = Path(__file__).resolve().parents[1] / "calibration" / "measured" / "h100" / "gpu_steps.json"
# GPT shapes from 125M-class to 1.3B-class (GPT-3 paper table 2.1 widths), batch x seq
# chosen so one step is 20-300 ms on an H100 and fits in 80 GB without recompute.
CONFIGS = [
    {"name": "gpt-350m", "layers": 24, "hidden": 1024, "heads": 16, "seq_len": 2048, "micro_batch": 8},
    {"name": "gpt-760m", "layers": 24, "hidden": 1536, "heads": 16, "seq_len": 2048, "micro_batch": 4},
    {"name": "gpt-1.3b", "layers": 24, "hidden": 2048, "heads": 16, "seq_len": 2048, "micro_batch": 4},
    {"name": "gpt-2.7b-8l", "layers": 8, "hidden": 2560, "heads": 32, "seq_len": 2048, "micro_batch": 8},
    {"name": "gpt-6.7b-4l", "layers": 4, "hidden": 4096, "heads": 32, "seq_len": 2048, "micro_batch": 8},
    {"name": "gpt-1.3b-s4k", "layers": 12, "hidden": 2048, "heads": 16, "seq_len": 4096, "micro_batch": 2},
]
VOCAB = 50304
WARMUP, STEPS = 3, 10


def _gpt(c: dict):
    import torch.nn as nn
    import torch.nn.functional as F

    h, heads = c["hidden"], c["heads"]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(h), nn.LayerNorm(h)
            self.qkv, self.proj = nn.Linear(h, 3 * h), nn.Linear(h, h)
            self.up, self.down = nn.Linear(h, 4 * h), nn.Linear(4 * h, h)

        def forward(self, x):
            b, s, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, heads, h // heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + F.dropout(self.proj(a.transpose(1, 2).reshape(b, s, h)), 0.1, self.training)
            return x + F.dropout(self.down(F.gelu(self.up(self.ln2(x)), approximate="tanh")),
                                 0.1, self.training)

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(VOCAB, h), nn.Embedding(c["seq_len"], h)
            self.blocks = nn.ModuleList(Block() for _ in range(c["layers"]))
            self.ln_f = nn.LayerNorm(h)

        def forward(self, idx, y):
            x = F.dropout(self.wte(idx) + self.wpe.weight[: idx.shape[1]], 0.1, self.training)
            for blk in self.blocks:
                x = blk(x)
            logits = self.ln_f(x) @ self.wte.weight.t()
            return F.cross_entropy(logits.float().view(-1, VOCAB), y.view(-1))

    return GPT()


def cuda_times(fn, warmup: int, reps: int) -> list[float]:
    """Seconds of each of ``reps`` calls of ``fn`` after ``warmup``, by CUDA events."""
    import torch
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        out.append(a.elapsed_time(b) * 1e-3)
    return out


def measure_one(c: dict, trace: Path | None = None, compiled: bool = False,
                shapes: bool = False) -> dict:
    """``compiled``: the model through torch.compile (Inductor fuses the bias, dropout,
    residual-add, GELU and LayerNorm kernels, as Megatron's fused kernels do)."""
    import torch

    torch.manual_seed(0)
    dev = torch.device("cuda")
    eager = _gpt(c).to(dev, torch.bfloat16).train()
    params = list(eager.parameters())
    model = torch.compile(eager) if compiled else eager
    master = [p.detach().float().clone().requires_grad_(True) for p in params]
    opt = torch.optim.Adam(master, lr=1e-4, fused=True)
    idx = torch.randint(0, VOCAB, (c["micro_batch"], c["seq_len"]), device=dev)
    y = torch.randint(0, VOCAB, (c["micro_batch"], c["seq_len"]), device=dev)

    def step():
        model(idx, y).backward()
        for m, p in zip(master, params, strict=True):
            m.grad = p.grad.float()          # fp32 main gradients
            p.grad = None
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            torch._foreach_copy_(params, master)   # bf16 weights from the fp32 masters

    times = cuda_times(step, WARMUP, STEPS)
    peak = torch.cuda.max_memory_allocated() / 2**30
    if trace is not None:   # a real trace of this GPU for workloads/traces (2 profiled steps)
        from torch.profiler import ProfilerActivity, profile, schedule
        # record_shapes: the ops' input shapes, which `replay --durations model` prices
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                     record_shapes=shapes,
                     schedule=schedule(wait=0, warmup=1, active=2, repeat=1),
                     on_trace_ready=lambda p: p.export_chrome_trace(str(trace))) as prof:
            for _ in range(3):
                step()
                prof.step()
    return c | {"compiled": compiled, "vocab": VOCAB, "step_s": sorted(times)[len(times) // 2], "steps_s": times,
                "peak_mem_gib": peak}


def measure(out: Path, trace: str | None = None, compiled: bool = False,
            shapes: bool = False) -> Path:
    import torch

    rows: list[dict] = []
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("gpu_steps_compiled.json" if compiled else "gpu_steps.json")
    for c in CONFIGS:   # the file is rewritten after every row: a cut-off run keeps its rows
        rows.append(measure_one(c, out / f"{c['name']}_trace.json" if c["name"] == trace else None,
                                compiled, shapes))
        print(json.dumps({k: rows[-1][k] for k in ("name", "step_s", "peak_mem_gib")}), flush=True)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        doc = {"device_name": torch.cuda.get_device_name(), "torch_version": torch.__version__,
               "cuda_version": torch.version.cuda,
               "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "warmup": WARMUP, "steps": STEPS, "rows": rows}
        path.write_text(json.dumps(doc, indent=1))
    return path


def scenario(row: dict, gpu: str, profile: str | None) -> dict:
    """One GPU of ``gpu`` running ``row``'s model with one micro-batch per step."""
    system = {"gpu": gpu, "gpus_per_node": 1, "nics_per_node": 1, "nic_gbps": 400,
              "nic_hop_latency_us": 14.0, "source": "one GPU (benchmarks/gpu_step.py)",
              "scale_up": {"kind": "nvswitch", "domain_gpus": 1, "gb_s_per_gpu": 450,
                           "hop_latency_us": 3.4, "nvls": False}}
    model = {k: row[k] for k in ("layers", "hidden", "heads", "vocab", "seq_len")}
    return {"name": row["name"], "cluster": {"system": system, "nodes": 1, "profile": profile},
            "workload": {"model": model, "global_batch": row["micro_batch"],
                         "micro_batch": row["micro_batch"], "precision": "bf16"}}


def predict(path: Path, profile: str | None) -> list[dict]:
    from calibration.fit_measured import catalog_gpu_for
    from sim import scenario as scenario_mod
    from sim.simulate import simulate

    doc = json.loads(path.read_text())
    gpu = catalog_gpu_for(doc["device_name"])
    out = []
    for row in doc["rows"]:
        sc = scenario_mod.parse(scenario(row, gpu, profile), row["name"])
        pred = simulate(sc, band=False).iteration_time_s
        out.append({"name": row["name"], "measured_s": row["step_s"], "predicted_s": pred,
                    "error_pct": 100 * (pred / row["step_s"] - 1)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measure", action="store_true")
    ap.add_argument("--out", type=Path, default=MEASURED.parent)
    ap.add_argument("--compile", action="store_true", help="--measure: torch.compile the model")
    ap.add_argument("--trace", default=None, help="--measure: also record a Kineto trace of this config")
    ap.add_argument("--shapes", action="store_true",
                    help="--trace: record the ops' input shapes (record_shapes=True)")
    ap.add_argument("--profile", default=None, help="profile name or YAML (default: the GPU's)")
    a = ap.parse_args()
    if a.measure:
        print(measure(a.out, a.trace, a.compile, a.shapes))
        return
    rows = predict(MEASURED, a.profile)
    print(f"{'model':14} {'measured ms':>11} {'predicted ms':>12} {'error':>7}")
    for r in rows:
        print(f"{r['name']:14} {1e3 * r['measured_s']:11.1f} {1e3 * r['predicted_s']:12.1f} "
              f"{r['error_pct']:+6.1f}%")
    errs = sorted(abs(r["error_pct"]) for r in rows)
    print(f"median |error| {errs[len(errs) // 2]:.1f}%, max {errs[-1]:.1f}%")


if __name__ == "__main__":
    main()
