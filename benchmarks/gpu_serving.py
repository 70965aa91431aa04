"""Serving iterations on a real GPU: prefill and decode of Llama 3 8B, timed and predicted.

    python benchmarks/gpu_serving.py --measure --out calibration/measured/h100   # on the GPU
    python benchmarks/gpu_serving.py [--profile h100-measured]                   # anywhere

``--measure`` builds Llama 3 8B's shapes in torch with random bf16 weights (RMSNorm,
fused QKV with grouped-query attention, rotary positions, SwiGLU MLP, a KV cache written in
place, scaled_dot_product_attention) and times on one GPU, with CUDA events (median of 10
after warm-up):
- prefill of one prompt of P tokens (batch 1, causal attention, logits of the last token),
  TensorRT-LLM's first-token latency;
- one decode step of B sequences each with a context of L cached tokens (one new token per
  sequence).
Each is captured in a CUDA graph, as serving engines run them, so the host's launch
latency (~20 ms for the ~600 kernels of one eager pass) is not in the time.
Without ``--measure`` it reads ``gpu_serving.json`` and predicts every row with the
serving iteration model of ``clustersim simulate`` (workloads/inference/ops.py) on one GPU,
with the kernels this forward launches (``kernels: eager``, workloads/inference/eager.py:
13 per rotary call, two per KV write and per SwiGLU; keep them in step if the forward
changes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MEASURED = Path(__file__).resolve().parents[1] / "calibration" / "measured" / "h100" / "gpu_serving.json"
MODEL = "llama3-8b"
SHAPE = {"layers": 32, "hidden": 4096, "heads": 32, "kv_heads": 8, "ffn": 14336, "vocab": 128256}
PREFILL = (128, 512, 2048, 8192)
DECODE = ((1, 1024), (8, 1024), (32, 1024), (64, 2048), (128, 512))
WARMUP, REPS = 3, 10


def _model(dev, max_ctx: int, batch: int):
    """Weights and a KV cache of ``batch`` x ``max_ctx`` tokens; returns (forward, cache)."""
    import torch
    import torch.nn.functional as F

    s = SHAPE
    h, hd = s["hidden"], s["hidden"] // s["heads"]
    kvh = s["kv_heads"]
    bf = torch.bfloat16

    def w(*shape):
        return torch.randn(*shape, device=dev, dtype=bf) * 0.02
    layers = [{"qkv": w(h, (s["heads"] + 2 * kvh) * hd), "o": w(h, h), "up": w(h, 2 * s["ffn"]),
               "down": w(s["ffn"], h), "n1": torch.ones(h, device=dev, dtype=bf),
               "n2": torch.ones(h, device=dev, dtype=bf)} for _ in range(s["layers"])]
    emb, head = w(s["vocab"], h), w(h, s["vocab"])
    kc = torch.zeros(s["layers"], batch, kvh, max_ctx, hd, device=dev, dtype=bf)
    vc = torch.zeros_like(kc)
    inv = 1.0 / (10000 ** (torch.arange(0, hd, 2, device=dev) / hd))

    def rope(x, pos):
        f = pos[:, None].float() * inv[None, :]
        cos, sin = f.cos().to(bf)[:, None], f.sin().to(bf)[:, None]   # (t, 1, hd/2)
        x1, x2 = x[..., ::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), -1).flatten(-2)

    def forward(tokens, start: int):
        b, t = tokens.shape
        pos = torch.arange(start, start + t, device=dev)
        x = emb[tokens]
        for i, L in enumerate(layers):
            qkv = F.rms_norm(x, (h,), L["n1"]) @ L["qkv"]
            q, k, v = qkv.split([h, kvh * hd, kvh * hd], -1)
            q = rope(q.view(b, t, -1, hd), pos).transpose(1, 2)
            k = rope(k.view(b, t, kvh, hd), pos).transpose(1, 2)
            kc[i, :b, :, start:start + t] = k
            vc[i, :b, :, start:start + t] = v.view(b, t, kvh, hd).transpose(1, 2)
            a = F.scaled_dot_product_attention(q, kc[i, :b, :, :start + t], vc[i, :b, :, :start + t],
                                               is_causal=t > 1, enable_gqa=True)
            x = x + a.transpose(1, 2).reshape(b, t, h) @ L["o"]
            gate, up = (F.rms_norm(x, (h,), L["n2"]) @ L["up"]).chunk(2, -1)
            x = x + (F.silu(gate) * up) @ L["down"]
        return x[:, -1] @ head          # logits of the last position only
    return forward


def _graph(fn):
    """``fn`` captured in a CUDA graph (after a warm-up call): returns its replay."""
    import torch
    fn()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def _time(fn) -> float:
    """Median seconds per call (gpu_step.cuda_times: CUDA events after a warm-up)."""
    from benchmarks.gpu_step import cuda_times
    out = sorted(cuda_times(fn, WARMUP, REPS))
    return out[len(out) // 2]


def measure(out: Path) -> Path:
    import torch

    dev = torch.device("cuda")
    rows = []
    with torch.inference_mode():
        for p in PREFILL:
            fwd = _model(dev, p, 1)
            toks = torch.randint(0, SHAPE["vocab"], (1, p), device=dev)
            rows.append({"kind": "prefill", "batch": 1, "tokens": p, "context": 0,
                         "time_s": _time(_graph(lambda fwd=fwd, toks=toks: fwd(toks, 0)))})
            print(json.dumps(rows[-1]), flush=True)
            del fwd
            torch.cuda.empty_cache()
        for b, ctx in DECODE:
            fwd = _model(dev, ctx + 1, b)
            toks = torch.randint(0, SHAPE["vocab"], (b, 1), device=dev)
            rows.append({"kind": "decode", "batch": b, "tokens": 1, "context": ctx,
                         "time_s": _time(_graph(lambda fwd=fwd, toks=toks, ctx=ctx: fwd(toks, ctx)))})
            print(json.dumps(rows[-1]), flush=True)
            del fwd
            torch.cuda.empty_cache()
    doc = {"model": MODEL, "kernels": "eager", "device_name": torch.cuda.get_device_name(),
           "torch_version": torch.__version__,
           "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gpu_serving.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def predict(path: Path, profile: str | None) -> list[dict]:
    """Each row through the serving iteration model on one GPU of the measured kind."""
    from calibration.validate_inference import predict_serving
    return predict_serving(path, profile)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measure", action="store_true")
    ap.add_argument("--out", type=Path, default=MEASURED.parent)
    ap.add_argument("--profile", default=None, help="profile name or YAML (default: the GPU's)")
    a = ap.parse_args()
    if a.measure:
        print(measure(a.out))
        return
    rows = predict(MEASURED, a.profile)
    print(f"{'iteration':24} {'measured ms':>11} {'predicted ms':>12} {'error':>7}")
    for r in rows:
        what = (f"prefill {r['tokens']} tokens" if r["kind"] == "prefill"
                else f"decode B={r['batch']} ctx={r['context']}")
        print(f"{what:24} {1e3 * r['time_s']:11.2f} {1e3 * r['predicted_s']:12.2f} {r['error_pct']:+6.1f}%")
    errs = sorted(abs(r["error_pct"]) for r in rows)
    print(f"median |error| {errs[len(errs) // 2]:.1f}%, max {errs[-1]:.1f}%")


if __name__ == "__main__":
    main()
