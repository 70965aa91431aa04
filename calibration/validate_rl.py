"""RL post-training step time (NeMo RL v0.4/v0.5/v0.6 GRPO/DAPO, OpenRLHF PPO): predicted vs
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
- "On policy" rows are colocated (NeMo RL's default, grpo_math_1B.yaml); "k-step Off" rows
  put generation and training on separate pools as the recipe does (half the nodes each,
  e.g. grpo-llama3.1-8b-instruct-2n8g-async-1off.yaml: 1 generation node of 2; 8 of 24 in
  the 8-step-off recipe) with off_policy_steps k; vLLM's gpu_memory_utilization is the
  recipe's, and so are the engine's batch limits: vllm.LLM's 1024 sequences / 16384 tokens
  on the synchronous colocated recipes, AsyncLLM's 128 / 2048 (vLLM's ENGINE_CONTEXT
  defaults) on every async_engine recipe (calibration/rl_recipes.py, rollout_scheduler);
- weight sync: every generation GPU receives every full tensor (``sync: broadcast``). Both
  of NeMo RL's refit paths, the colocated CUDA-IPC stream and the broadcast between
  separate pools, iterate over ``megatron_bridge.export_hf_weights`` on every training
  rank (megatron_policy_worker.py, ``_iter_params_with_optional_kv_scales``), which
  all-gathers each tensor whole over tp / ep before it is sent; the design note
  docs/design-docs/nccl-reshard-refit.md calls the separate-pool transport a broadcast of
  "every full parameter tensor ... to every generation rank";
- log-prob and training passes as each row's recipe sets them (rl_recipes.recipe: the file, at
  the table's commit, its ``defaults:`` chain followed to grpo_math_1B.yaml): full
  recompute only where ``activation_checkpointing: true`` (Llama 3.1 8B, DeepSeek-V3,
  Qwen3-235B, DAPO; none for Qwen3-30B-A3B and Qwen3-32B), ``logprob_batch_size`` packed
  rows per log-prob microbatch, sequence parallelism, sequence packing to
  train_max_seq_len (off in the GB200 DeepSeek-V3 recipes: each sample padded to the
  step's longest), the MoE token dispatcher, micro batch 1, the
  distributed optimizer (zero 1) with 2-byte gradient reduction and the parameter
  all-gather overlapped (``distributed_data_parallel_config``).

    python -m calibration.validate_rl
"""

from __future__ import annotations

import math
import re
from importlib import resources

import numpy as np
import pandas as pd

from calibration import rl_recipes as rr
from hw_models.errors import ClusterSimError
from sim import scenario
from workloads.model import presets

CSV = "reference/modern/rl_posttraining.csv"
SUITE = "rl"
RESPONSE_SIGMA = 0.8        # assumption: the lognormal spread of the RL issue's example
SYSTEMS = {"DGX-H100": "dgx-h100", "GB200-NVL72": "gb200-nvl72"}


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

    # The median may lie above the cap: a published mean close to the cap (Qwen3's thinking
    # responses, ~80% of it) needs more than half the responses truncated.
    lo, hi = 1.0, 1000.0 * cap
    if clipped_mean(hi) < target:
        raise ValueError(f"mean length {target} is not below the cap {cap}")
    for _ in range(200):              # bisection: the clipped mean rises with the median
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
    if r.algorithm == "SWE":     # NeMo RL v0.6's Nemotron-3-Nano SWE row
        return ("multi-turn agentic SWE rollouts (tool calls, environment time between turns) "
                "are not modelled, nor training context parallelism over Mamba layers (CP 8)")
    arch = rr.model_id(r)
    if arch is None or arch not in presets():
        return f"{r.model}: no preset in the model zoo"
    return None


def build(r, prompt: int) -> scenario.Scenario:
    system = SYSTEMS[r.gpu_type]
    from hw_models import catalog
    per_node = catalog.system(system).gpus_per_node
    n = int(r.num_gpus)
    k = rr.off_policy_steps(r)
    rec = rr.recipe(r)
    g_tp, g_pp = _ints(r.gen_parallel)[:2]
    tp, cp, ep, pp = train_plan(r.train_parallel)
    cap = int(r.train_max_seq_len) - prompt
    median = median_for_mean(float(r.gen_avg_seq_len), cap, RESPONSE_SIGMA)
    samples = int(r.gen_global_batch_samples)
    key = (rr.model_id(r), r.algorithm)
    group = rr.GROUPS.get(key, rr.GROUP)
    group = group if samples % group == 0 else 1
    prec = str(r.precision_train).lower()
    work = {"kind": "rl", "algorithm": str(r.algorithm).lower(), "model": rr.model_id(r),
            "precision": prec, "prompts_per_step": samples // group, "samples_per_prompt": group,
            "prompt_len": prompt,
            "response_len": {"dist": "lognormal", "median": median, "sigma": RESPONSE_SIGMA,
                             "high": cap},
            "rollout": {"parallel": {"tp": g_tp, "pp": g_pp},
                        "precision": str(r.precision_gen).lower(),
                        "kv_cache": {"gpu_memory_utilization": rec.mem_util},
                        "batch_multiplier": rr.BATCH_MULTIPLIER.get(key, 1.0),
                        "enforce_eager": key in rr.ENFORCE_EAGER,
                        "engine_host": rr.ENGINE_HOST.get(r.source_id, "vllm-v1"),
                        "scheduler": rr.rollout_scheduler(r)},
            "train": rr.train_block(r, (tp, cp, ep, pp)),
            "placement": {"rollout_gpus": rec.rollout_gpus, "train_gpus": n - rec.rollout_gpus}
            if k else "colocated",
            "off_policy_steps": k, "sync": "broadcast"}
    return scenario.parse({"name": f"{rr.model_id(r)}-{n}-{r.gpu_type}",
                           "cluster": {"system": system, "nodes": max(1, n // per_node)},
                           "workload": work}, "rl validation row")


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
            "split_note": "no row of this table publishes the generation/training split "
            "(gen_time_s and train_update_time_s are empty); the split is checked on NeMo RL's "
            "published step breakdown (calibration/validate_rl_split.py)"}


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
