"""DeepSeek-V3 serving kernels against published per-kernel timings: ``clustersim validate
moe`` prints the table (calibration/reference/kernels/deepseek_v3_serving_kernels.csv).

- DeepSeek's decode profile (H800, EP128, two micro-batches of 128 tokens with
  multi-token prediction, KV 4096), kernel by kernel: the model's kernels of one MoE layer
  and one micro-batch at that shape (the GEMMs, norms and FlashMLA of
  workloads/inference/moe_ops.py on the catalog's ``hgx-h800``). DeepEP's transfers are
  checked on DeepEP's own benchmarks (calibration/deepep_check.py): in the trace they
  include the wait for the other micro-batch.
- Two-batch overlap: SGLang's measured speedup of TBO over the same batch without it
  (decode 256 tokens per GPU on EP72; prefill 27-35% at the same tokens per GPU on EP32),
  against the model's iteration with and without ``overlap``.
Nothing is fitted on these rows.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from hw_models import catalog, profile
from hw_models.compute import ComputeModel
from sim.network import AnalyticalNetwork, ClusterLayout
from sim.serving.moe_iteration import MoEIterationModel
from workloads.inference.moe_ops import latent_decode_op
from workloads.inference.ops import Shape
from workloads.model import presets

DECODE_TOKENS, DECODE_SEQS, DECODE_KV, EP = 128, 64, 4096, 128


def iteration(system: str, ep: int, overlap: bool) -> MoEIterationModel:
    """DeepSeek-V3 in FP8 on ``ep`` GPUs of ``system`` with DeepEP, as SGLang serves it."""
    s = catalog.system(system)
    prof = profile.load(s.default_profile)
    nodes = -(-ep // s.gpus_per_node)
    net = AnalyticalNetwork(ClusterLayout(s, nodes, s.nic_gbps), prof)
    return MoEIterationModel(presets()["deepseek-v3"], 1, 1, "fp8", ComputeModel(s.gpu_spec, prof), net,
                             ep=ep, dispatcher="deepep", overlap=overlap,
                             domain_gpus=s.scale_up.domain_gpus, dispatch_dtype="fp8")


def decode_kernels() -> dict[str, float]:
    """Microseconds per kernel of one MoE layer and one micro-batch at DeepSeek's decode
    profile shape (``decode_attn``: FlashMLA over the BF16 latent cache)."""
    it = iteration("hgx-h800", EP, True)
    ops = it.token_ops(DECODE_TOKENS, True, DECODE_TOKENS * EP, None, True)
    att = presets()["deepseek-v3"].attention
    core = latent_decode_op(128, att.kv_lora_rank, att.qk_rope_head_dim, DECODE_SEQS * DECODE_KV,
                            DECODE_SEQS, 2, "bf16", q_per_seq=2)
    out: dict[str, float] = {}
    for o in [*ops, core]:
        out[o.name] = out.get(o.name, 0.0) + it._costs.op_time(o) * 1e6
    return out


def tbo_gain(phase: str, tokens: int, prompt: int = 0) -> float:
    """Percent the model's two-batch overlap speeds up one iteration of SGLang's rows."""
    if phase == "decode":
        ep, system = 72, "dgx-h100"
        shape = Shape(0, 0, 0, tokens * ep, tokens * ep * prompt, tokens * ep)
    else:
        ep, system, seqs = 32, "dgx-h100", tokens // prompt
        shape = Shape(tokens * ep, seqs * ep * prompt * (prompt + 1) // 2, prompt, 0, 0, seqs * ep)
    on, off = (iteration(system, ep, ov).time(shape) for ov in (True, False))
    return (off / on - 1) * 100


def kernel_rows() -> pd.DataFrame:
    df = pd.read_csv(resources.files("calibration").joinpath(
        "reference", "kernels", "deepseek_v3_serving_kernels.csv"), comment="#", dtype=str)
    k, out = decode_kernels(), []
    for r in df.itertuples():
        names = [n for n in str(r.model_ops).split(",") if n and n != "nan"]
        us = sum(k.get(n, 0.0) for n in names)
        out.append({"kernel (DeepSeek decode, H800, us)": r.kernel, "published": float(r.published_us),
                    "predicted": round(us, 1),
                    "error_pct": round((us / float(r.published_us) - 1) * 100, 1)})
    pub, pred = sum(o["published"] for o in out), sum(o["predicted"] for o in out)
    out.append({"kernel (DeepSeek decode, H800, us)": "sum of the above", "published": pub,
                "predicted": round(pred, 1), "error_pct": round((pred / pub - 1) * 100, 1)})
    return pd.DataFrame(out)


def tbo_rows() -> pd.DataFrame:
    """SGLang's two-batch overlap speedups: decode 256 per GPU at KV 2000 (25.5%), prefill
    at 8192 tokens per GPU (27-35%, prompts not stated: the model's 1K-4K prompts)."""
    rows = [("decode, EP72, 256 tokens/GPU, KV 2000", 25.5, 25.5, tbo_gain("decode", 256, 2000))]
    rows += [(f"prefill, EP32, 8192 tokens/GPU, prompts {p}", 27.0, 35.0, tbo_gain("prefill", 8192, p))
             for p in (1024, 4096)]
    out = []
    for name, lo, hi, gain in rows:
        miss = gain - hi if gain > hi else (gain - lo if gain < lo else 0.0)
        out.append({"two-batch overlap speedup (SGLang, H100)": name,
                    "published_pct": f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}",
                    "predicted_pct": round(gain, 1), "points_outside": round(miss, 1)})
    return pd.DataFrame(out)
