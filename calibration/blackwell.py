"""The Blackwell profiles ``b200``, ``gb200``, ``gb300`` from published kernel measurements.

    python -m calibration.build_profiles      # writes calibration/profiles/{b200,gb200,gb300}.yaml

Inputs (calibration/reference/kernels/, a source line per row tag in each header):
- gemm_blackwell.csv: XLA's sm_100 GEMM throughput table (m, n, k in 256..4096, bf16
  and fp8 e4m3; single GEMMs and its largest batched ones, b = 4 at m = 4096) and the
  B200's Maximum Achievable Matmul FLOPS (best shape of a brute-force search, bf16 and
  fp8) -> ``gemm.fp16`` / ``gemm.fp8`` (same functional form, fit and wave term as the
  H100 curves, B200 peaks and 148 SMs from the catalog), shared by the three profiles.
- attention_cudnn_blackwell.csv: cuDNN fused attention forward + backward (BF16, GQA,
  head dim 128) -> ``attention.causal`` / ``attention.full`` of each part on its own rows
  (B200: cuDNN 9.10.2, causal, 2K-128K tokens, its no-mask curve from the GB200; GB200
  and GB300: cuDNN 9.22, both masks, 2K-32K), each as efficiency against its own part's
  BF16 peak. Every one of these row sets peaks inside its range (8K-32K tokens) and
  falls beyond, so the curves carry that decline (``seq_fall``), held at the longest
  measured length (``seq_max``). B300 borrows gb300 (the same Blackwell Ultra chip).

Everything else (memory-bound kernels, collectives, fabric, step variability) is the
``h100`` profile's, stated in the profile's notes: nothing published here measures them
on Blackwell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from calibration.fitting import Fit, fit_attention, fit_gemm
from hw_models import catalog
from hw_models.dtypes import DTYPE_BYTES

GEMM_CSV = "kernels/gemm_blackwell.csv"
ATTN_CSV = "kernels/attention_cudnn_blackwell.csv"
# Rows of each GEMM source the fit uses: XLA's table (measured on an sm_100 part) and the
# MAMF best shape of the part itself. GB200's and B300's MAMF rows are held-out checks.
GEMM_ROWS = {"XLA-SM100": "sm_100", "MAMF-2026": "B200"}
# Below 2K tokens the PyTorch-path B200 timings sit at a fixed 0.13-0.16 ms forward and
# 0.48-0.49 ms backward from 512 to 1K tokens (host dispatch, not kernel throughput:
# cuDNN's own frontend runs the 512-token forward in 0.021 ms on a GB200).
MIN_ATTN_SEQ = 2048
# The h100 inputs the b200 profile does not borrow from (its GEMM and attention sweeps).
HOPPER_KERNEL_FILES = ("gemm_cublaslt.csv", "flashattention2.csv", "deepep_normal_kernels_h200.csv")
# The part whose catalog peak each attention source is measured against.
ATTN_GPU = {"B200": "b200", "GB200": "gb200", "GB300": "gb300", "H200": "h200"}


def gemm_rows(ref: pd.DataFrame, dtype: str, rows: dict[str, str] = GEMM_ROWS) -> pd.DataFrame:
    keep = np.zeros(len(ref), bool)
    for source, gpu in rows.items():
        keep |= ((ref.source == source) & (ref.gpu == gpu)).to_numpy()
    return ref[keep & (ref["dtype"] == dtype).to_numpy()]


def mamf_efficiency(ref: pd.DataFrame, dtype: str, gpu: catalog.GPUSpec) -> float:
    """The part's Maximum Achievable Matmul FLOPS over its peak (best of a shape search)."""
    row = ref[(ref.source == "MAMF-2026") & (ref.gpu == "B200") & (ref["dtype"] == dtype)]
    return float(row.tflops.iloc[0]) * 1e12 / gpu.peak_flops(dtype)


def gemm_fit(ref: pd.DataFrame, dtype: str, gpu: catalog.GPUSpec, bw_eff: float) -> Fit:
    """The H100 GEMM form (fitting.fit_gemm, wave term on the catalog's SM count), its
    asymptotic efficiency capped at the part's MAMF: XLA's shapes stop at 4096, so
    without the cap the fp8 curve extrapolates past the best efficiency any shape reached."""
    df = gemm_rows(ref, dtype)
    m = df.b * df.m         # b GEMMs in one call: b x the rows, b x the output tiles
    t = 2.0 * m * df.n * df.k / (df.tflops * 1e12)
    return fit_gemm(m, df.n, df.k, t, gpu.peak_flops(dtype), gpu.hbm_bw, bw_eff,
                    DTYPE_BYTES[dtype], sms=gpu.sms, eff_cap=mamf_efficiency(ref, dtype, gpu))


def attention_efficiency(ref: pd.DataFrame) -> pd.Series:
    """Forward + backward efficiency of each row against its part's BF16 peak: the
    sources' FLOPs (FlashAttention-2 convention, backward 2.5 x forward) over the two
    kernels' time, as flashattention2.csv's fwd_bwd rows count them."""
    fwd = 4.0 * ref.batch * ref.q_heads * ref.seq.astype(float) ** 2 * ref.head_dim
    fwd = fwd / np.where(ref.causal == "yes", 2.0, 1.0)
    peak = ref.gpu.map(lambda g: catalog.gpu(ATTN_GPU[g]).peak_flops("bf16"))
    return 3.5 * fwd / ((ref.fwd_ms + ref.bwd_ms) * 1e-3) / peak


# Each profile's attention: (part, source of its causal rows, source of its no-mask rows).
# The B200's own rows are causal only; its no-mask curve is the GB200's (same sm_100 die).
PARTS = {
    "b200": ("b200", "CUDNN-B200-2025-06", "CUDNN-GB200-2026-04"),
    "gb200": ("gb200", "CUDNN-GB200-2026-04", "CUDNN-GB200-2026-04"),
    "gb300": ("gb300", "CUDNN-GB300-2026-04", "CUDNN-GB300-2026-04"),
}
FALL_NOTE = (" Each curve carries the decline the rows show at long sequences (efficiency / "
             "(1 + s / seq_fall)), held at the longest measured kv length (seq_max) beyond it.")
ATTN_NOTES = {
    "b200": "attention.causal fitted on cuDNN 9.10.2 fused attention on one B200 (2K-128K "
            "tokens, forward + backward, BF16); attention.full on cuDNN 9.22 on one GB200 (no "
            "mask, 2K-32K: no B200 row without a mask), as efficiency against the GB200's peak.",
    "gb200": "attention.causal and attention.full fitted on cuDNN 9.22 fused attention on one "
             "GB200 (2K-32K tokens, forward + backward, BF16, causal and no mask).",
    "gb300": "attention.causal and attention.full fitted on cuDNN 9.22 fused attention on one "
             "GB300 (Blackwell Ultra, sm_103: twice the B200's exponential throughput per SM; "
             "2K-32K tokens, forward + backward, BF16). B300 (the same chip) borrows it.",
}


def attention_fits(ref: pd.DataFrame, causal_source: str, full_source: str) -> dict[str, Fit]:
    ref = ref[ref.seq >= MIN_ATTN_SEQ]
    eff = attention_efficiency(ref)
    fits = {}
    for key, causal, source in (("causal", "yes", causal_source), ("full", "no", full_source)):
        sel = (ref.causal == causal) & (ref.source == source)
        fits[key] = fit_attention(ref.seq[sel], eff[sel], fall=True)
    return fits


GEMM_NOTE = (
    "gemm.fp16 (bf16) and gemm.fp8 fitted on XLA's sm_100 GEMM table (145 shapes per dtype: "
    "every single GEMM of 256-4096, the b = 4 batched ones at m = 4096) and the B200's "
    "best-shape MAMF point, whose efficiency caps eff_max; B200 peaks and 148 SMs. Other "
    "parts use the same curve against their own catalog peaks. mxfp8/nvfp4 GEMMs use the "
    "fp8 curve (no published block-scaled sm_100 sweep).")
BORROWED_NOTE = (
    "memory, memory_ops, collectives, fabric and variability are the h100 profile's (no "
    "published Blackwell STREAM, kernel-floor, NCCL or step-spread measurements in the "
    "reference set): memory efficiencies are relative to the catalog's HBM bandwidth, link "
    "curves to the catalog's NVLink5 bandwidth.")


def build_blackwell(h100: dict, ref_dir, sha) -> list[dict]:
    """``b200``, ``gb200``, ``gb300``: the h100 profile with the GEMM and attention fits
    replaced (one GEMM fit on sm_100 data, each part's own attention rows)."""
    from hw_models.profile import parse
    gpu = catalog.gpu("b200")
    gemm_ref = pd.read_csv(ref_dir / GEMM_CSV, comment="#")
    attn_ref = pd.read_csv(ref_dir / ATTN_CSV, comment="#")
    bw_eff = h100["memory"]["bw_eff"]
    gemm = {"fp16": gemm_fit(gemm_ref, "bf16", gpu, bw_eff),
            "fp8": gemm_fit(gemm_ref, "fp8", gpu, bw_eff)}
    borrowed = {k: v for k, v in h100["quality"].items()
                if k != "notes" and not k.startswith(("gemm.", "attention."))}
    unc = {k: v for k, v in h100["uncertainty"].items() if not k.startswith(("gemm.", "attention."))}
    inputs = [sha(GEMM_CSV), sha(ATTN_CSV)] + [
        i for i in h100["inputs"] if not i["path"].endswith(HOPPER_KERNEL_FILES)]
    out = []
    for name, (device, causal_source, full_source) in PARTS.items():
        attn = attention_fits(attn_ref, causal_source, full_source)
        fitted = {f"gemm.{k}": v for k, v in gemm.items()} | {
            f"attention.{k}": v for k, v in attn.items()}
        prof = {
            "name": name, "device": device, "fitted_by": "python -m calibration.build_profiles",
            "inputs": inputs,
            "gemm": {k: v.params for k, v in gemm.items()},
            "attention": {k: v.params for k, v in attn.items()},
            **{k: h100[k] for k in ("memory", "memory_ops", "collectives", "fabric") if k in h100},
            "quality": {k: v.quality for k, v in fitted.items()} | borrowed | {
                "notes": [GEMM_NOTE, ATTN_NOTES[name] + FALL_NOTE, BORROWED_NOTE]},
            "uncertainty": {k: v.uncertainty for k, v in fitted.items()} | unc,
        }
        if "variability" in h100:
            prof["variability"] = h100["variability"]
        parse(prof, source=name)
        out.append(prof)
    return out
