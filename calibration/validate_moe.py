"""MoE training validation: predicted vs published throughput per GPU.

Rows: calibration/reference/modern/moe_training.csv (NVIDIA's published Megatron / NeMo
runs of Grok-1, Qwen3-MoE and gpt-oss; each row's configuration as published). The metric
is tokens/s per GPU (the published column, or global batch x sequence / step time / GPUs
where a step time is what was published); error = predicted / published - 1.

How each row is run (the same for every row; nothing is fitted to a row):
- the model preset of its ``arch_id`` (Grok-1 proxy rows with fewer layers keep their
  ``num_layers_run``), its GPUs, precision (FP8 / MXFP8 / FP8-CS run the fp8 GEMM path),
  sequence, batch sizes, tp/pp/vpp/ep/etp; sequence parallelism when tp > 1; Megatron's
  distributed optimizer (zero 1); fused attention; no recompute (gpt-oss-120b: its
  recipe's recompute_modules [layernorm, moe_act] where set, and the attention backend
  its container's Transformer Engine selects, calibration/moe_recipes.py); balanced
  routing (the runs force-balance their tokens, page footnote); the memory check off.
- the dispatcher, the all-to-all overlap and the CUDA graphs that the published
  Megatron-Bridge recipe of the row's release sets for that model and GPU
  (calibration/moe_recipes.py; gpt-oss-120b with FP8 attention where its recipe sets
  ``fp8_dot_product_attention``); HybridEP runs as ``deepep``; the host's launch cost of
  what the recipe runs eager (docs/accuracy.md).
- GB200: jobs sit in 64-GPU NVLink segments of an NVL72 rack (16 of its 18 trays).
- layer counts that do not split over pp x vpp use Megatron's layout that counts the
  embedding and the loss as one layer each (``account_for_embedding/loss_in_pipeline_split``:
  first and last virtual stage one layer short).
- context parallelism (the Grok-1 rows with cp 2) as published: ring attention over the CP
  group; MoE parallel folding regroups tp x cp x dp as etp x ep x expert-dp.

Skipped rows say why: GPUs with no system in the catalog, rows the csv notes flag as
self-inconsistent or as a known software regression (a page footnote, or the maintainers'
regression issue: Qwen3-30B-A3B dropless on H100 / B200 in 25.11 and 26.02, Megatron-Bridge
#1998; Qwen3-235B-A22B MXFP8 on B200 in 25.11, #1705), token-dropping rows whose capacity factor is not published,
an example log line whose configuration is inferred.

The hybrid Mamba / attention MoE rows (Nemotron 3, hybrid_moe_training.csv) are their own
group: calibration/validate_hybrid.py, skipped while their model has no preset. So are the
DeepSeek-V3, Kimi K2 and DeepSeek-V4 Flash rows (mbperf_moe_training.csv):
calibration/validate_mbperf.py; the eager runs users published (moe_eager_training.csv):
calibration/validate_eager_moe.py; and Megatron-LM's own MoE recipes (moe_mlm_recipes.csv):
calibration/validate_mlm_recipes.py.
"""

from __future__ import annotations

from importlib import resources
from types import SimpleNamespace

import numpy as np
import pandas as pd

from calibration import (
    deepep_check,
    serving_kernel_check,
    ssd_kernel_check,
    validate_eager_moe,
    validate_hybrid,
    validate_mbperf,
    validate_mlm_recipes,
    validate_modelzoo,
)
from calibration.moe_recipes import (
    GPT_OSS_FP8_ATTENTION,
    cuda_graphs,
    gpt_oss_attention_backend,
    gpt_oss_fused_mlp,
    gpt_oss_recompute,
    gpt_oss_release_rows,
    hybridep_sms,
    recipe_options,
    release,
    router_options,
)
from calibration.row_runner import SYSTEMS, cluster_system, first_reason, run_rows, system_check
from hw_models import catalog
from sim.scenario import parse
from sim.simulate import simulate
from workloads.model import presets

REF = resources.files("calibration").joinpath("reference", "modern")
BLACKWELL = ("B200", "GB200", "B300", "GB300")
ARCH = {"grok1-314b": "grok-1"}
PRECISION = {"BF16": "bf16", "FP8": "fp8", "MXFP8": "fp8", "FP8-CS": "fp8", "FP8-MX": "fp8"}
# FP8 recipe of each label (workloads/fp8.py): FP8-CS is current (tensorwise) scaling,
# MXFP8 / FP8-MX is MXFP8 block scaling; Megatron-Bridge's plain "FP8" H100 rows run the
# same configurations its 25.11 table labels FP8-CS; NeMo's FP8 of the dgxc-benchmarking
# Grok-1 runs is its default delayed scaling (NeMo 2 ``bf16_with_fp8_mixed``).
RECIPE = {"MXFP8": "mxfp8", "FP8-MX": "mxfp8", "FP8-CS": "tensorwise"}
# CUDA compute capability of each GPU (NVIDIA's CUDA GPU list): sm 9.0, 10.0, 10.3.
SM = {"H100": 90, "B200": 100, "GB200": 100, "B300": 103, "GB300": 103}


def recipe_of(row) -> str | None:
    label = str(row.precision).upper()
    if PRECISION.get(label) != "fp8":
        return None
    return RECIPE.get(label, "delayed" if str(row.source_id).startswith("DGXC") else "tensorwise")


def gpt_oss_options(row, arch: str, gpu: str) -> dict:
    """gpt-oss-120b: the recipe's recompute modules, the attention kernel the row's
    container selects (cuDNN's fused kernel in every release: ``flash`` here) and whether
    the experts run Transformer Engine's fused grouped MLP (``moe.fused_mlp``)."""
    if arch != "gpt-oss-120b":
        return {}
    dpa = bool(fp8_options(row, arch, gpu).get("fp8", {}).get("dot_product_attention"))
    backend = gpt_oss_attention_backend(release(row), SM[gpu], dpa)
    return {"recompute": gpt_oss_recompute(row, gpu),
            "attention": "unfused" if backend == "unfused" else "flash"}


def fp8_options(row, arch: str, gpu: str) -> dict:
    """``workload.fp8`` of a row: its recipe, and FP8 attention where the recipe sets it."""
    if recipe_of(row) is None:
        return {}
    since = GPT_OSS_FP8_ATTENTION.get((gpu, str(row.precision).split()[0].upper()))
    dpa = arch == "gpt-oss-120b" and since is not None and release(row) >= since
    return {"fp8": {"recipe": recipe_of(row), **({"dot_product_attention": True} if dpa else {})}}


def _num(x) -> float | None:
    try:
        v = float(str(x).split()[0].rstrip("%"))
    except (ValueError, IndexError):
        return None
    return None if np.isnan(v) else v


def rows() -> pd.DataFrame:
    return pd.read_csv(REF.joinpath("moe_training.csv"), comment="#", dtype=str)


def gpu_of(row) -> str:
    return str(row.gpu_type).split()[0]


def published(row) -> float | None:
    per_gpu = _num(row.throughput_tokens_per_s_per_gpu)
    if per_gpu is not None:
        return per_gpu
    step = _num(row.step_time_s)
    if step is None:
        return None
    return float(row.global_batch_seqs) * float(row.seq_len) / step / float(row.num_gpus)


def skip_reason(row) -> str | None:
    notes, gpu = str(row.notes), gpu_of(row)
    return first_reason([
        ("(inferred" in str(row.gpu_type), "example log line; configuration inferred, not a table row"),
        system_check(gpu),
        ("inconsistency unresolved" in notes, "tokens/s is half of GBS*seq/step (csv note: self-inconsistent)"),
        ("known cuDNN issue" in notes, "a known cuDNN regression in this release (page footnote)"),
        ("dropless Qwen3-30B-A3B regression" in notes,
         "a known dropless-MoE regression in this release (Megatron-Bridge issue #1998)"),
        ("Qwen3-235B-A22B B200 MXFP8 regression" in notes,
         "a known Qwen3-235B B200 MXFP8 regression in this release (Megatron-Bridge issue #1705)"),
        ("token-DROP" in notes, "token-dropping run: capacity factor not published, precision unlabeled"),
        (str(row.precision).upper() not in PRECISION, f"precision {row.precision} not mapped"),
        (published(row) is None, "no throughput or step time published"),
    ])


def _default_etp(arch: str, tp: int) -> int:
    """Where a row leaves etp blank: Megatron-Bridge's Qwen3 / gpt-oss base configs set
    expert_tensor_parallel_size=1; Megatron-Core otherwise makes it equal to tp
    (TransformerConfig: ``expert_tensor_parallel_size`` None -> tensor parallel size)."""
    return 1 if arch in ("qwen3-30b-a3b", "qwen3-235b-a22b", "gpt-oss-120b") else tp


def scenario_for(row, fidelity: str = "analytical") -> dict:
    gpu = gpu_of(row)
    system, per_node = cluster_system(gpu), SYSTEMS[gpu][1]
    arch = ARCH.get(row.arch_id, row.arch_id)
    model = presets()[arch]
    layers = int(_num(row.num_layers_run) or model.layers)
    tp, pp = int(float(row.tp)), int(float(row.pp))
    vpp = int(_num(row.vpp) or 1)
    dispatcher, overlap = recipe_options(row, arch, gpu)
    parallel = {"tp": tp, "pp": pp, "vpp": vpp, "cp": int(_num(row.cp) or 1), "ep": int(float(row.ep)),
                "etp": int(_num(row.etp) or _default_etp(arch, tp)), "sequence_parallel": tp > 1,
                "zero": 1,
                "schedule": "interleaved" if vpp > 1 else "1f1b"}
    if layers % (pp * vpp):
        # Megatron-Bridge's layouts for layer counts that do not split (Qwen3-235B: 94 layers
        # on pp 8 x vpp 4): the embedding and the loss count as one layer each
        # (account_for_embedding/loss_in_pipeline_split in its Qwen3 recipes).
        parallel |= {"account_for_embedding_in_pipeline_split": True,
                     "account_for_loss_in_pipeline_split": True}
    return {"name": f"{row.source_id}-{arch}-{gpu}-{row.num_gpus}",
            "cluster": {"system": system, "nodes": int(row.num_gpus) // per_node},
            "workload": {"kind": "training",
                         "model": arch if layers == model.layers else
                         model.model_dump(exclude_none=True) | {"layers": layers},
                         "seq_len": int(row.seq_len), "global_batch": int(row.global_batch_seqs),
                         "micro_batch": int(row.micro_batch),
                         "precision": PRECISION[str(row.precision).upper()],
                         **fp8_options(row, arch, gpu), **gpt_oss_options(row, arch, gpu),
                         "parallel": parallel,
                         "moe": {"dispatcher": dispatcher, "overlap": overlap,
                                 **({"hybridep_sms": hybridep_sms(row, arch, gpu)}
                                    if dispatcher == "hybridep" else {}),
                                 **router_options(row, arch),
                                 **({"fused_mlp": True} if arch == "gpt-oss-120b"
                                    and gpt_oss_fused_mlp(row, gpu) else {})},
                         "cuda_graphs": cuda_graphs(row, arch, gpu)},
            "sim": {"fidelity": fidelity, "check_memory": False}}


def _predict(sc: dict, cache: dict) -> tuple[float, dict]:
    key = repr({k: sc[k] for k in ("cluster", "workload", "sim")})
    if key not in cache:
        res = simulate(parse(sc, sc["name"]), band=False)
        tokens = sc["workload"]["global_batch"] * sc["workload"]["seq_len"]
        stages = res.extra["moe"]["stages"]
        cache[key] = (tokens / res.iteration_time_s / res.world_size,
                      {"iteration_s": round(res.iteration_time_s, 3),
                       "ep_share": round(max(s["ep_s"] for s in stages) / res.iteration_time_s, 2),
                       "mem_gib": round(res.memory_peak_gib, 1)})
    return cache[key]


def _plan(row) -> str:
    return (f"tp{row.tp} pp{row.pp} vpp{_num(row.vpp) and int(_num(row.vpp)) or 1} "
            f"ep{row.ep} mbs{row.micro_batch} gbs{row.global_batch_seqs}")


def run(fidelity: str = "analytical") -> pd.DataFrame:
    """Every moe_training.csv row: predicted tokens/s per GPU, or why skipped
    (row_runner.run_rows)."""
    cache: dict = {}
    return run_rows(rows(), lambda row, zoo: skip_reason(row), scenario_for,
                    lambda sc: _predict(sc, cache), fidelity, _plan,
                    lambda row: round(published(row) or float("nan"), 1))


def group_rows(group, fidelity: str = "analytical") -> pd.DataFrame:
    """Every row of a row group (its module's ``run(predict, fidelity)``), predicted as this
    suite's rows are: the hybrid Mamba / attention MoE rows (validate_hybrid; a model with no
    preset yet is skipped with that reason), the DeepSeek-V3 / Kimi K2 / DeepSeek-V4 Flash
    rows (validate_mbperf), the eager runs users published (validate_eager_moe),
    Megatron-LM's own recipes (validate_mlm_recipes) and the MoE team's best-practice runs
    (validate_modelzoo)."""
    cache: dict = {}
    return group.run(lambda sc: _predict(sc, cache), fidelity)


def summary(df: pd.DataFrame) -> dict:
    done = df[df.skipped == ""]
    err = done.error_pct.abs()
    h100 = done[done.gpu == "H100"].error_pct.abs()
    bw = done[done.gpu.isin(BLACKWELL)].error_pct.abs()
    return {"rows": len(df), "predicted": len(done), "skipped": int((df.skipped != "").sum()),
            "median_abs_error_pct": float(err.median()) if len(err) else float("nan"),
            "median_abs_error_pct_h100": float(h100.median()) if len(h100) else float("nan"),
            "median_abs_error_pct_blackwell": float(bw.median()) if len(bw) else float("nan"),
            "median_abs_error_pct_by_gpu": {g: float(d.error_pct.abs().median())
                                            for g, d in done.groupby("gpu")},
            "max_abs_error_pct": float(err.max()) if len(err) else float("nan")}


def attention_kernel_rows() -> pd.DataFrame:
    """The windowed attention of gpt-oss (head dim 64, causal, 128-token window; 1024 on
    H200 and in the cuDNN 9.19.1 GB200 / GB300 rows) as one kernel, predicted against cuDNN's
    SDPA training benchmark
    (kernels/cudnn_sdpa_gpt_oss.csv): the attention model the MoE rows use, checked on its
    own; the fp8 / mxfp8 rows with FP8 attention (its backward over every causal pair)."""
    from hw_models import profile
    from hw_models.compute import ComputeModel
    from workloads.graph import CommGroup
    from workloads.layer_attention import fused_attention
    from workloads.layers import LayerContext
    df = pd.read_csv(resources.files("calibration").joinpath("reference", "kernels",
                                                             "cudnn_sdpa_gpt_oss.csv"), comment="#")
    base, out = presets()["gpt-oss-120b"], []
    for r in df.itertuples():
        system = catalog.system({"GB200": "gb200-nvl72", "GB300": "gb300-nvl72", "H200": "dgx-h200"}[r.gpu])
        cm = ComputeModel(system.gpu_spec, profile.load(system.default_profile))
        window = base.sliding_window.model_copy(update={"size": int(r.window)})
        m = base.model_copy(update={"heads": r.heads, "kv_heads": r.kv_heads, "kv_channels": r.head_dim,
                                    "seq_len": r.seq, "sliding_window": window})
        ctx = LayerContext(m, int(r.batch), 1, False, "bf16", CommGroup((0,)), "flash",
                           fp8_attention=r.dtype != "bfloat16")
        op = fused_attention(ctx, True, r.head_dim, r.head_dim, r.kernel == "bwd")
        ms = cm.time(op.op_class, op.flops, op.bytes, op.dtype, op.shape[2], op.causal, op.shape) * 1e3
        out.append({"gpu": r.gpu, "dtype": r.dtype, "seq": r.seq, "window": r.window, "kernel": r.kernel,
                    "measured_ms": r.time_ms, "predicted_ms": round(ms, 3),
                    "error_pct": round((ms / r.time_ms - 1) * 100, 1)})
    return pd.DataFrame(out)


def _serving_skip(row) -> str | None:
    metric, par = str(row.metric), str(row.parallelism)
    checks = [
        ("derived" in metric, "an estimate derived from DeepSeek's profile data, not a measurement"),
        ("MTP" in metric, "speculative decoding with MTP (60% acceptance assumed) is not modelled"),
        ("/" in str(row.value) or "and" in str(row.value), "end-to-end PD-disaggregated figure or a "
         "cluster / node pair without the per-role parallelism"),
        ("EP" not in par, "parallelism not published"),
    ]
    return next((why for bad, why in checks if bad), None)


def _length(text: str) -> int:
    t = str(text).split()[0].strip('"')
    return int(float(t[:-1]) * 1024) if t.upper().endswith("K") else int(float(t))


def predict_serving(row, bw_scale: float = 1.0) -> float:
    """Tokens/s per node of one serving iteration, SGLang's published setup: DeepSeek-V3 in
    FP8 on DGX H100 nodes, attention data-parallel over the EP group, DeepEP dispatch in
    FP8 (normal kernels for prefill, low-latency ones for decode), two-batch overlap (the
    system column lists it), balanced experts (EPLB); prefill 16,384 tokens per GPU of the
    stated prompt length; decode at the stated batch per GPU and KV length. ``bw_scale``
    multiplies every link's bandwidth."""
    from hw_models import profile
    from hw_models.compute import ComputeModel
    from sim.network import AnalyticalNetwork, ClusterLayout
    from sim.serving.moe_iteration import MoEIterationModel
    from workloads.inference.ops import Shape
    system = catalog.system("dgx-h100")
    prof = profile.load(system.default_profile)
    ep, nodes = int(row.num_gpus), int(row.num_nodes)
    net = AnalyticalNetwork(ClusterLayout(system, nodes, system.nic_gbps), prof, bw_scale)
    it = MoEIterationModel(presets()[row.arch_id], 1, 1, "fp8", ComputeModel(system.gpu_spec, prof),
                           net, ep=ep, dispatcher="deepep", overlap=True,
                           domain_gpus=system.scale_up.domain_gpus, dispatch_dtype="fp8",
                           deepep_mode="auto")
    per_node = system.gpus_per_node
    if row.phase == "prefill":
        L, tokens = _length(row.input_len_tokens), 16384
        seqs = tokens // L
        t = it.time(Shape(tokens * ep, seqs * ep * L * (L + 1) // 2, L, 0, 0, seqs * ep))
        return per_node * tokens / t
    b, kv = int(row.batch_per_gpu), _length(row.kv_cache_len_tokens)
    t = it.time(Shape(0, 0, 0, b * ep, b * ep * kv, b * ep))
    return per_node * b / t


def _batch(row) -> str:
    """The iteration a serving row runs, as ``predict_serving`` sets it up."""
    if row.phase == "prefill":
        return f"16384 tok/GPU of {_length(row.input_len_tokens)}"
    if row.phase == "decode" and _num(row.batch_per_gpu):
        return f"{int(row.batch_per_gpu)}/GPU at KV {_length(row.kv_cache_len_tokens)}"
    return ""


def inference_rows() -> pd.DataFrame:
    """The serving rows (moe_inference.csv): predicted tokens/s per node, or why skipped;
    ``batch`` says what the iteration runs and ``net_pct`` how much of its time the network
    adds (against links 1000x faster): rows of one setup that differ only in their prompt
    length share a prediction when their iteration is bound by the network."""
    df = pd.read_csv(REF.joinpath("moe_inference.csv"), comment="#", dtype=str)
    out = []
    for row in df.itertuples():
        base = {"source": row.source_id, "model": row.arch_id, "gpus": row.num_gpus,
                "phase": row.phase, "setup": row.parallelism, "batch": _batch(row),
                "published": row.value, "unit": row.unit}
        why = _serving_skip(row)
        if why:
            out.append(base | {"predicted": np.nan, "error_pct": np.nan, "net_pct": np.nan,
                               "skipped": why})
            continue
        pred = predict_serving(row)
        out.append(base | {"predicted": round(pred), "skipped": "",
                           "error_pct": round((pred / float(row.value) - 1) * 100, 1),
                           "net_pct": round((1 - pred / predict_serving(row, 1e3)) * 100, 1)})
    return pd.DataFrame(out)


def report(fidelity: str = "analytical") -> tuple[dict, str]:
    """The training and serving tables, their summaries, as ``clustersim validate moe``
    prints them."""
    df = run(fidelity)
    s = summary(df)
    hyb = group_rows(validate_hybrid, fidelity)
    s["hybrid"] = validate_hybrid.summary(hyb)
    mb = group_rows(validate_mbperf, fidelity)
    s["mbperf"] = validate_mbperf.summary(mb)
    eager = group_rows(validate_eager_moe, fidelity)
    s["eager"] = validate_eager_moe.summary(eager)
    mlm = group_rows(validate_mlm_recipes, fidelity)
    s["mlm"] = validate_mlm_recipes.summary(mlm)
    zoo = group_rows(validate_modelzoo, fidelity)
    s["modelzoo"] = validate_modelzoo.summary(zoo)
    inf = inference_rows()
    served = inf[inf.skipped == ""].error_pct.abs()
    s["serving_median_abs_error_pct"] = float(served.median()) if len(served) else float("nan")
    attn = attention_kernel_rows()
    deepep = deepep_check.kernel_rows()
    hybridep = deepep_check.hybridep_rows()
    serving_k, tbo = serving_kernel_check.kernel_rows(), serving_kernel_check.tbo_rows()
    gpt = df[df.model == "gpt-oss-120b"]
    ssd = ssd_kernel_check.rows()
    stacks = pd.DataFrame(gpt_oss_release_rows(release(SimpleNamespace(source_id=s))
                                               for s in gpt.source))
    with pd.option_context("display.width", 250, "display.max_colwidth", 70):
        text = (df.fillna("").to_string(index=False)
                + "\n\nserving rows (moe_inference.csv):\n" + inf.fillna("").to_string(index=False)
                + f"\nserving: {len(served)} rows predicted, median |error| "
                f"{s['serving_median_abs_error_pct']:.1f}%"
                + f"\n\n{s['predicted']} of {s['rows']} training rows predicted ({s['skipped']} "
                f"skipped, reasons in the table). median |error|: all "
                f"{s['median_abs_error_pct']:.1f}%, H100 {s['median_abs_error_pct_h100']:.1f}%, "
                f"Blackwell {s['median_abs_error_pct_blackwell']:.1f}% (Hopper efficiency profile on "
                f"Blackwell: uncalibrated); max {s['max_abs_error_pct']:.1f}%; by GPU: "
                + ", ".join(f"{g} {v:.1f}%" for g, v in s["median_abs_error_pct_by_gpu"].items())
                + "; " + validate_hybrid.summary_line(s["hybrid"])
                + "; " + validate_mbperf.summary_line(s["mbperf"])
                + "\n\nhybrid Mamba / attention MoE rows (hybrid_moe_training.csv):\n"
                + hyb.fillna("").to_string(index=False)
                + "\n" + validate_hybrid.summary_line(s["hybrid"])
                + "\n\nkernel check: Mamba-2 Triton SSD kernels vs published timings, the model at "
                f"{catalog.ssd_kernel():.4f} of the roofline (kernels/mamba2_ssd.csv; fit 1: the "
                "rows it is fitted on; no GPU named: priced on H100 and A100):\n"
                + ssd.to_string(index=False)
                + "\n\nDeepSeek-V3 / Kimi K2 / DeepSeek-V4 Flash rows (mbperf_moe_training.csv):\n"
                + mb.fillna("").to_string(index=False) + "\n" + validate_mbperf.summary_line(s["mbperf"])
                + "\n\neager Megatron-Core runs published by users (moe_eager_training.csv):\n"
                + eager.fillna("").to_string(index=False) + "\n"
                + validate_eager_moe.summary_line(s["eager"])
                + "\n\nMegatron-LM's own MoE recipes (moe_mlm_recipes.csv):\n"
                + mlm.fillna("").to_string(index=False) + "\n"
                + validate_mlm_recipes.summary_line(s["mlm"])
                + "\n\nMegatron-MoE-ModelZoo best practices (moe_modelzoo_best_practice.csv):\n"
                + zoo.fillna("").to_string(index=False) + "\n"
                + validate_modelzoo.summary_line(s["modelzoo"])
                + "\n\ngpt-oss-120b: what each release's container ran in attention "
                "(calibration/moe_recipes.py; cuDNN fused in every row):\n"
                + stacks.to_string(index=False)
                + "\n\nkernel check: gpt-oss windowed attention vs cuDNN's SDPA training benchmark "
                "(kernels/cudnn_sdpa_gpt_oss.csv):\n" + attn.to_string(index=False)
                + "\n\nkernel check: DeepEP dispatch / combine vs DeepEP's published benchmarks "
                "(H800, CX7 400 Gb/s; collectives/deepep_*_kernels.csv):\n"
                + deepep.to_string(index=False)
                + "\n\nkernel check: HybridEP inside one NVLink domain (hybridep; deepep = DeepEP's kernels) vs its "
                "published BF16 algorithm bandwidth (collectives/hybridep_intranode_kernels.csv):\n"
                + hybridep.to_string(index=False)
                + "\n\nkernel check: DeepSeek-V3 decode kernels vs DeepSeek's H800 decode profile, one MoE "
                "layer and micro-batch (kernels/deepseek_v3_serving_kernels.csv):\n"
                + serving_k.to_string(index=False)
                + "\n\ncheck: two-batch overlap speedup vs SGLang's ablation:\n" + tbo.to_string(index=False))
    return {"rows": df.to_dict("records"), "serving_rows": inf.to_dict("records"),
            "hybrid_rows": hyb.to_dict("records"), "mbperf_rows": mb.to_dict("records"),
            "eager_rows": eager.to_dict("records"), "mlm_rows": mlm.to_dict("records"),
            "modelzoo_rows": zoo.to_dict("records"),
            "ssd_kernel_rows": ssd.to_dict("records"),
            "attention_kernel_rows": attn.to_dict("records"),
            "deepep_kernel_rows": deepep.to_dict("records"),
            "hybridep_kernel_rows": hybridep.to_dict("records"),
            "gpt_oss_containers": stacks.to_dict("records"), "summary": s}, text


SUITE = "moe"


def _rate_rows(df: pd.DataFrame, group: str) -> list[dict]:
    """Dashboard rows (tokens/s per GPU) of a run_rows frame's predicted rows, grouped as
    ``group`` and the GPU."""
    return [{"name": f"{r.source} {r.model} {r.gpu} {r.gpus} GPUs {r.precision} {r.plan}",
             "predicted": r.predicted_tok_s_gpu, "published": r.published_tok_s_gpu,
             "unit": "tok/s/GPU", "kind": "rate", "group": f"{group} {r.gpu}"}
            for r in df[df.skipped == ""].itertuples()]


def dashboard_rows() -> list[dict]:
    """Rows for ``clustersim validate all`` (calibration/dashboard.py): the predicted
    training rows (tokens/s per GPU) grouped by GPU, and the predicted serving rows."""
    out = [row for df, group in ((run(), "training"), (group_rows(validate_hybrid), "hybrid"),
                                 (group_rows(validate_mbperf), "deepseek-kimi"),
                                 (group_rows(validate_eager_moe), "eager"),
                                 (group_rows(validate_mlm_recipes), "mlm-recipes"),
                                 (group_rows(validate_modelzoo), "modelzoo"))
           for row in _rate_rows(df, group)]
    inf = inference_rows()
    out += [{"name": f"{r.source} {r.model} {r.phase} {r.setup}", "predicted": float(r.predicted),
             "published": float(r.published), "unit": r.unit, "kind": "rate", "group": "serving"}
            for r in inf[inf.skipped == ""].itertuples()]
    return out
