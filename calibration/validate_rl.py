"""RL post-training step time (NeMo RL v0.4/v0.5 GRPO/DAPO, OpenRLHF PPO): predicted vs
published for every row of reference/modern/rl_posttraining.csv; rows that cannot be
simulated are listed with the reason. Nothing is fitted to the table: the serving,
training and network costs are the global microbenchmark fits.

What the rows do not publish is filled the same way for every row:
- prompt and response lengths: "G-Average Seq len" (gen_avg_seq_len) is NeMo RL's mean
  generation length, the response tokens only (grpo.py logs "Mean Generation Length" =
  rollouts.py ``mean_gen_tokens_per_sample``, the assistant tokens of each sample), and
  "Tokens / sec / GPU" is ``total_num_tokens`` (the sum over the step's samples of prompt +
  response, grpo.py) / step time / all GPUs (algorithms/utils.py,
  print_performance_metrics). The two published columns with the step time and the GPU
  and sample counts give the prompt tokens per sample by that identity:
  tokens/s/GPU x step x GPUs / samples - mean generation length. The prompt length is an
  input of the row (the dataset's problems in the model's chat template), so it is taken
  per model and algorithm as the median of that identity over the model's rows
  (``prompt_tokens``), not row by row; no cost is derived from the step time. Responses
  are lognormal with sigma RESPONSE_SIGMA, clipped at train_max_seq_len - prompt (vLLM's
  max_model_len = max_total_sequence_length in the recipes), with the median that makes
  their mean the published mean generation length;
- samples per prompt: GROUP (NeMo RL's performance recipes: 64 prompts x 32 generations
  = the 2048 samples of grpo-llama3.1-8b-instruct-2n8g.yaml);
- "On policy" rows are colocated (NeMo RL's default, grpo_math_1B.yaml) with vLLM at
  gpu_memory_utilization 0.6; "1-step Off" rows split the GPUs evenly between generation
  and training (async-grpo-llama3.1-8b-instruct-2n8g.yaml: 1 generation node of 2) with
  gpu_memory_utilization 0.8 and off_policy_steps 1;
- weight sync: every generation GPU receives every full tensor (``sync: broadcast``). Both
  of NeMo RL's refit paths, the colocated CUDA-IPC stream and the broadcast between
  separate pools, iterate over ``megatron_bridge.export_hf_weights`` on every training
  rank (megatron_policy_worker.py, ``_iter_params_with_optional_kv_scales``), which
  all-gathers each tensor whole over tp / ep before it is sent; the design note
  docs/design-docs/nccl-reshard-refit.md calls the separate-pool transport a broadcast of
  "every full parameter tensor ... to every generation rank";
- log-prob and training passes as each row's recipe sets them (``recipe``: the file, at
  the table's commit, its ``defaults:`` chain followed to grpo_math_1B.yaml): full
  recompute only where ``activation_checkpointing: true`` (Llama 3.1 8B, DeepSeek-V3,
  Qwen3-235B, DAPO; none for Qwen3-30B-A3B and Qwen3-32B), ``logprob_batch_size`` packed
  rows per log-prob microbatch, sequence parallelism, sequence packing to
  train_max_seq_len (off in the GB200 DeepSeek-V3 recipes: each sample padded to the
  step's longest), the MoE token dispatcher (``DISPATCHER``), micro batch 1, the
  distributed optimizer (zero 1) with 2-byte gradient reduction and the parameter
  all-gather overlapped (``distributed_data_parallel_config``).

    python -m calibration.validate_rl
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from hw_models.errors import ClusterSimError
from sim import scenario
from workloads.model import presets

CSV = "reference/modern/rl_posttraining.csv"
SUITE = "rl"
RESPONSE_SIGMA = 0.8        # assumption: the lognormal spread of the RL issue's example
GROUP = 32                  # samples per prompt (NeMo RL performance recipes)
SYSTEMS = {"DGX-H100": "dgx-h100", "GB200-NVL72": "gb200-nvl72"}
# Rows whose arch_id is empty: the zoo's preset for the published model name.
MODELS = {"Qwen3-32B": "qwen3-32b"}
MEM_UTIL = {True: 0.6, False: 0.8}       # colocated, separate pools
# Colocated rows generate through vllm.LLM (NeMo RL vllm_worker.py), whose batch limits on a
# GPU of >= 70 GiB other than A100 default to max_num_seqs 1024 and max_num_batched_tokens
# 16384 (vLLM engine/arg_utils.py, get_batch_defaults, UsageContext.LLM_CLASS). The async
# engine of the 1-step-off rows (AsyncLLM) keeps the scheduler defaults (256 / 8192 here).
VLLM_LLM_CLASS = {"policy": "vllm", "max_batch": 1024, "max_tokens": 16384}


def load() -> pd.DataFrame:
    return pd.read_csv(resources.files("calibration").joinpath(CSV), comment="#")


def _ints(text: str) -> list[int]:
    """'[TP,CP,EP,PP,VPP]=[2,1,8,1,n/a]' -> [2, 1, 8, 1]."""
    values = text.split("=", 1)[1].strip("[]").split(",")
    return [int(v) for v in values if re.fullmatch(r"\d+", v.strip())]


def train_plan(text: str) -> tuple[int, int, int, int]:
    """(tp, cp, ep, pp) of a row's training layout. The Llama 3.1 8B rows publish 7
    entries under a 5-entry header ('[1,1,1,1,1,2,n/a]'); their sixth entry is the
    pipeline size: grpo-llama3.1-8b-instruct-2n8g.yaml sets pipeline_model_parallel_size 2
    (the on-policy rows' 2) and its async-1off variant 1 (the v0.5 1-step-off row's 1)."""
    v = _ints(text)
    if len(v) == 6:
        return v[0], v[1], v[2], v[5]
    tp, cp, ep, pp = v[:4]
    return tp, cp, ep, pp


def median_for_mean(target: float, cap: int, sigma: float) -> float:
    """Median of a lognormal response length whose mean, clipped above at ``cap``, is
    ``target`` tokens (closed-form mean of a lognormal clipped above)."""

    def clipped_mean(median: float) -> float:
        mu = math.log(median)
        z = (math.log(cap) - mu) / sigma
        phi = 0.5 * (1 + math.erf((z - sigma) / math.sqrt(2)))
        tail = 0.5 * (1 - math.erf(z / math.sqrt(2)))
        return math.exp(mu + sigma**2 / 2) * phi + cap * tail

    lo, hi = 1.0, float(cap)
    for _ in range(100):              # bisection: the clipped mean rises with the median
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if clipped_mean(mid) < target else (lo, mid)
    return math.sqrt(lo * hi)


def step_tokens_per_sample(r) -> float:
    """Prompt + response tokens per sample implied by the published columns (NeMo RL's
    tokens/s/GPU = total_num_tokens / step time / all GPUs)."""
    return float(r.tokens_per_s_per_gpu) * float(r.step_time_s) * int(r.num_gpus) / int(
        r.gen_global_batch_samples)


def prompt_tokens(df: pd.DataFrame, r) -> int | None:
    """Prompt tokens per sample for a row: the median, over the rows of the same model and
    algorithm (one dataset, one chat template), of published tokens per sample - published
    mean generation length."""
    same = df[(df.model == r.model) & (df.algorithm == r.algorithm) & df.gpu_type.isin(SYSTEMS)]
    implied = [step_tokens_per_sample(x) - float(x.gen_avg_seq_len) for x in same.itertuples()]
    implied = [v for v in implied if np.isfinite(v)]
    return int(round(float(np.median(implied)))) if implied else None


def skip_reason(r) -> str | None:
    if r.gpu_type not in SYSTEMS:
        return (f"{r.gpu_type}: the source publishes no response lengths, parallel plans or "
                "batch sizes for this run")
    arch = model_id(r)
    if arch is None or arch not in presets():
        return f"{r.model}: no preset in the model zoo"
    return None


# What NeMo RL's performance recipes (examples/configs/recipes/llm/performance/*.yaml,
# NVIDIA-NeMo/RL) set where the rows are silent: layers of the first and last pipeline
# stage (num_layers_in_first/last_pipeline_stage) by pipeline size, and the group size.
FIRST_LAST = {("deepseek-v3", 16): (3, 2), ("deepseek-v3", 8): (7, 6),
              ("qwen3-235b-a22b", 8): (11, 11), ("qwen3-235b-a22b", 4): (23, 23)}
GROUPS = {("deepseek-v3", "GRPO"): 16}     # grpo-deepseek-v3-*: 32 prompts x 16 generations
# The DAPO row's run (tests/test_suites/llm/performance/dapo-deepseek-v3-64n8g.sh at the
# table's commit 9dbd9adc9) overrides grpo.num_prompts_per_step=64 and
# num_generations_per_prompt=8 (the 512 samples the row lists); its recipe
# (dapo-deepseek-v3-64n8g.yaml) sets batch_multiplier 3: every generation batch is 3 x 64
# prompts, generated to the end, then filtered (grpo.py, dynamic_sampling). How many
# batches a step took is not published: one (rollout.gen_batches default).
GROUPS[("deepseek-v3", "DAPO")] = 8
BATCH_MULTIPLIER = {("deepseek-v3", "DAPO"): 3.0}
# vllm_cfg.gpu_memory_utilization: the performance recipes at the table's commits
# (cff17f83b for v0.4, 9dbd9adc9 for v0.5) set 0.8 on every 1-step-off recipe and nothing
# on the colocated ones (grpo_math_1B.yaml's 0.6): MEM_UTIL. Colocated recipes that set
# vllm_cfg.async_engine: true (grpo-deepseek-v3-32n8g.yaml, grpo-qwen3-235b-16n8g.yaml)
# generate through vLLM's AsyncLLM, whose batch limits are the scheduler defaults.
ASYNC_COLOCATED = {("deepseek-v3", "GRPO"), ("qwen3-235b-a22b", "GRPO")}

# The recipe each row ran (NVIDIA-NeMo/RL examples/configs/recipes/llm/performance/, at
# COMMITS[source]) and what it sets, its `defaults:` chain followed down to
# examples/configs/grpo_math_1B.yaml at the same commit.
COMMITS = {"NEMORL-v0.4": "cff17f83b", "NEMORL-v0.5": "9dbd9adc9"}
RECIPE_STEM = {"llama3-8b": "grpo-llama3.1-8b-instruct-2n{g}g", "deepseek-v3": "grpo-deepseek-v3-{n}n{g}g",
               "qwen3-235b-a22b": "grpo-qwen3-235b-{n}n{g}g", "qwen3-30b-a3b": "grpo-qwen3-30ba3b-{n}n{g}g",
               "qwen3-32b": "grpo-qwen3-32b-{n}n{g}g"}


@dataclass(frozen=True)
class Recipe:
    """What a row's recipe sets that the row does not publish (defaults chain resolved)."""
    file: str
    recompute: str          # megatron_cfg.activation_checkpointing: true -> full, unset -> none
    logprob_batch: int      # policy.logprob_batch_size (packed rows per log-prob microbatch)
    sequence_parallel: bool  # megatron_cfg.sequence_parallel
    packing: bool = True    # policy.sequence_packing.enabled (grpo_math_1B.yaml: true)


# activation_checkpointing: true in the llama3.1-8b, deepseek-v3, qwen3-235b and dapo
# recipes; the qwen3-30ba3b and qwen3-32b recipes leave it at grpo_math_1B.yaml's false.
# logprob_batch_size: llama3.1-8b 2; deepseek-v3 1, its async-1off variants 2; qwen3-235b 1;
# dapo 1; qwen3-30ba3b / qwen3-32b unset: grpo_math_1B.yaml's 4 at cff17f83b and
# ${policy.train_micro_batch_size} = 1 at 9dbd9adc9. sequence_parallel: true in the
# qwen3-235b, qwen3-32b and dapo recipes. sequence_packing.enabled: false in the GB200
# deepseek-v3 recipes (grpo-deepseek-v3-32n4g.yaml, -64n4g-async-1off.yaml).
RECIPE_SETTINGS = {  # model -> (recompute, logprob batch at v0.4, at v0.5, sequence parallel)
    "llama3-8b": ("full", 2, 2, False), "deepseek-v3": ("full", 1, 1, False),
    "qwen3-235b-a22b": ("full", 1, 1, True), "qwen3-30b-a3b": ("none", 4, 1, False),
    "qwen3-32b": ("none", 4, 1, True)}
# MoE token dispatcher of the training and log-prob passes: at 9dbd9adc9 grpo_math_1B.yaml
# sets moe_token_dispatcher_type "allgather" (moe_enable_deepep false), applied by
# nemo_rl/models/megatron/setup.py (_apply_moe_config); at cff17f83b neither NeMo RL's
# config nor its megatron_policy_worker.py sets it, so Megatron-Bridge's model providers
# at the pinned submodule (8aa287df3: deepseek_provider.py, qwen_provider.py) keep
# "alltoall".
DISPATCHER = {"NEMORL-v0.4": "alltoall", "NEMORL-v0.5": "allgather"}


def recipe(r) -> Recipe:
    """The recipe of a NeMo RL row: file name by model, GPUs, mode and precision, and its
    settings (RECIPE_SETTINGS, with the per-recipe exceptions below)."""
    model, off = model_id(r), str(r.policy_mode).startswith("1-step")
    g = 4 if r.gpu_type == "GB200-NVL72" else 8
    n = int(r.num_gpus) // g
    if r.algorithm == "DAPO":     # dapo-deepseek-v3-64n8g.yaml (9dbd9adc9)
        return Recipe("dapo-deepseek-v3-64n8g.yaml", "full", 1, True)
    stem = RECIPE_STEM[model].format(n=n, g=g)
    fp8 = "-fp8" if str(r.precision_train).upper() == "FP8" else ""
    file = stem + fp8 + ("-async-1off" if off else "") + ".yaml"
    rc, lp4, lp5, sp = RECIPE_SETTINGS[model]
    lp = lp4 if r.source_id == "NEMORL-v0.4" else lp5
    if model == "deepseek-v3" and off:      # grpo-deepseek-v3-64n8g-async-1off.yaml: 2
        lp = 2
    return Recipe(file, rc, lp, sp, packing=not (model == "deepseek-v3" and g == 4))


def stage_layers(model: str, pp: int) -> list[int] | None:
    """Layers per stage when pp does not divide them: the recipe's first and last stage,
    the middle stages evenly (first stages one more if the rest does not divide)."""
    layers = presets()[model].layers
    if layers % pp == 0:
        return None
    first, last = FIRST_LAST.get((model, pp), (None, None))
    if first is None:
        base, extra = divmod(layers, pp)
        return [base + (1 if i < extra else 0) for i in range(pp)]
    base, extra = divmod(layers - first - last, pp - 2)
    return [first, *(base + (1 if i < extra else 0) for i in range(pp - 2)), last]


def model_id(r) -> str | None:
    return r.arch_id if isinstance(r.arch_id, str) else MODELS.get(r.model)


def build(r, prompt: int) -> scenario.Scenario:
    system = SYSTEMS[r.gpu_type]
    from hw_models import catalog
    per_node = catalog.system(system).gpus_per_node
    n = int(r.num_gpus)
    off = str(r.policy_mode).startswith("1-step")
    g_tp, g_pp = _ints(r.gen_parallel)[:2]
    tp, cp, ep, pp = train_plan(r.train_parallel)
    cap = int(r.train_max_seq_len) - prompt
    median = median_for_mean(float(r.gen_avg_seq_len), cap, RESPONSE_SIGMA)
    samples = int(r.gen_global_batch_samples)
    group = GROUPS.get((model_id(r), r.algorithm), GROUP)
    group = group if samples % group == 0 else 1
    prec = str(r.precision_train).lower()
    work = {"kind": "rl", "algorithm": str(r.algorithm).lower(), "model": model_id(r),
            "precision": prec, "prompts_per_step": samples // group, "samples_per_prompt": group,
            "prompt_len": prompt,
            "response_len": {"dist": "lognormal", "median": median, "sigma": RESPONSE_SIGMA,
                             "high": cap},
            "rollout": {"parallel": {"tp": g_tp, "pp": g_pp},
                        "precision": str(r.precision_gen).lower(),
                        "kv_cache": {"gpu_memory_utilization": MEM_UTIL[not off]},
                        "batch_multiplier": BATCH_MULTIPLIER.get((model_id(r), r.algorithm), 1.0),
                        **({} if off or (model_id(r), r.algorithm) in ASYNC_COLOCATED
                           else {"scheduler": VLLM_LLM_CLASS})},
            "train": train_block(r, (tp, cp, ep, pp)),
            "placement": {"rollout_gpus": n // 2, "train_gpus": n // 2} if off else "colocated",
            "off_policy_steps": 1 if off else 0, "sync": "broadcast"}
    return scenario.parse({"name": f"{model_id(r)}-{n}-{r.gpu_type}",
                           "cluster": {"system": system, "nodes": max(1, n // per_node)},
                           "workload": work}, "rl validation row")


def train_block(r, plan: tuple[int, int, int, int]) -> dict:
    """The row's log-prob and training passes: its published plan, its recipe's settings
    (``recipe``) and grpo_math_1B.yaml's at both commits: micro batch 1, the distributed
    optimizer (zero 1), distributed_data_parallel_config grad_reduce_in_fp32 false (2-byte
    gradient reduction) and overlap_param_gather true."""
    tp, cp, ep, pp = plan
    rec, model = recipe(r), model_id(r)
    moe = presets()[model].is_moe
    # Megatron requires sequence parallelism for MoE models with tp > 1 (the v0.4
    # Qwen3-30B-A3B rows publish tp 2 where their recipe has tp 1 and sets it false).
    sp = rec.sequence_parallel or (moe and tp > 1)
    block = {"global_batch": int(r.train_global_batch_samples), "micro_batch": 1,
             "logprob_micro_batch": rec.logprob_batch,
             "parallel": {"tp": tp, "pp": pp, "cp": cp, "ep": ep, "zero": 1,
                          "sequence_parallel": sp and tp > 1,
                          "pipeline_layers": stage_layers(model, pp)},
             "recompute": rec.recompute,
             "max_seq_len": int(r.train_max_seq_len) if rec.packing else None,
             "overlap_param_gather": True, "grad_reduce_bytes": 2}
    if moe:
        block["moe"] = {"dispatcher": DISPATCHER[r.source_id]}
    return block


def run() -> pd.DataFrame:
    from sim.rl import simulate_rl
    rows = []
    df = load()
    for r in df.itertuples():
        base = {"source": r.source_id, "algorithm": r.algorithm, "model": r.model,
                "gpu": r.gpu_type, "gpus": int(r.num_gpus), "mode": r.policy_mode
                if isinstance(r.policy_mode, str) else "", "precision": r.precision_train
                if isinstance(r.precision_train, str) else "", "published_s": float(r.step_time_s)}
        reason = skip_reason(r)
        prompt = prompt_tokens(df, r) if reason is None else None
        if reason is None and prompt is None:
            reason = (f"{r.model}: no row of this model publishes tokens/s/GPU, step time and "
                      "mean generation length, so the prompt length is unknown")
        res = None
        if reason is None:
            try:
                res = simulate_rl(build(r, prompt))
            except ClusterSimError as exc:
                reason = f"not simulated: {exc}"
        if res is None:
            rows.append(base | {"predicted_s": np.nan, "error_pct": np.nan, "gen_share": np.nan,
                                "tok_s_gpu": np.nan, "published_tok_s_gpu": r.tokens_per_s_per_gpu,
                                "preemptions": np.nan, "skipped": reason})
            continue
        m = res.metrics
        pred = m["step_time_s"]
        rows.append(base | {"predicted_s": round(pred, 1),
                            "error_pct": round(100 * (pred - base["published_s"]) / base["published_s"], 1),
                            "gen_share": round(m["generation_s"] / pred, 2),
                            "tok_s_gpu": round(m["tokens_per_s_per_gpu"], 1),
                            "published_tok_s_gpu": r.tokens_per_s_per_gpu,
                            "preemptions": res.extra["rollout_preemptions"], "skipped": ""})
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> dict[str, object]:
    done = df[df.skipped == ""]
    err = done.error_pct.abs()
    return {"rows": len(df), "simulated": len(done), "skipped": int((df.skipped != "").sum()),
            "median_abs_error_pct": float(err.median()) if len(done) else float("nan"),
            "max_abs_error_pct": float(err.max()) if len(done) else float("nan"),
            "rows_over_15pct": int((err > 15).sum()), "target_median_pct": 15.0,
            "split_rows": 0, "split_note": "no row publishes the generation/training split "
            "(gen_time_s and train_update_time_s are empty), so the 10-point split target "
            "cannot be checked"}


def records(df: pd.DataFrame | None = None) -> list[dict]:
    """Rows for the ``validate all`` dashboard: {suite, name, predicted, published, error_pct}
    (skipped rows keep predicted/error_pct as None and say why)."""
    df = run() if df is None else df
    out = []
    for r in df.itertuples():
        name = f"{r.source} {r.algorithm} {r.model} {r.gpus}x{r.gpu} {r.mode} {r.precision}".strip()
        ok = r.skipped == ""
        out.append({"suite": SUITE, "name": name, "predicted": float(r.predicted_s) if ok else None,
                    "published": float(r.published_s), "error_pct": float(r.error_pct) if ok else None,
                    **({} if ok else {"skipped": r.skipped})})
    return out


def dashboard_rows() -> list[dict]:
    """The ``validate all`` dashboard's rows (calibration/dashboard.py): the simulated rows
    as step times in seconds; skipped rows have no prediction to judge."""
    return [{k: v for k, v in r.items() if k != "skipped"} | {"unit": "s", "kind": "time"}
            for r in records() if r["predicted"] is not None]


def table(df: pd.DataFrame) -> str:
    s = summary(df)
    shown = df.drop(columns=["skipped"]).fillna("")
    text = shown.to_string(index=False)
    skipped = df[df.skipped != ""]
    if len(skipped):
        text += "\n\nskipped rows:\n" + "\n".join(
            f"  {r.source} {r.model} {r.gpus}x{r.gpu} {r.mode}: {r.skipped}" for r in skipped.itertuples())
    text += (f"\n\nstep time: median |error| {s['median_abs_error_pct']:.1f}% (target <= 15%), max "
             f"{s['max_abs_error_pct']:.1f}%, rows over 15%: {s['rows_over_15pct']} of "
             f"{s['simulated']} simulated ({s['skipped']} skipped)\nsplit: {s['split_note']}")
    return text


if __name__ == "__main__":
    print(table(run()))
