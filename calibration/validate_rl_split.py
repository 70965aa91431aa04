"""RL step phases against NeMo RL's published step-time breakdown (the generation /
training split).

reference/modern/rl_phase_split.csv: the NeMo-RL v0.3 blog's Table 1 (GRPO, Megatron
backend, colocated on DGX H100, vLLM 0.9.0): total step time and its "Policy training",
"Refit", "Generation" and "Get logprobs" seconds for Llama 3.1 8B, Llama 3.1 70B, Qwen3 32B
and Qwen3 30B-A3B, with the parallel plans the blog and the v0.3.0 configs give. The main
table (validate_rl) publishes step times only; these rows check where the time goes.

Each row is built as validate_rl builds the on-policy rows: 64 prompts x 32 samples,
lognormal responses (validate_rl.RESPONSE_SIGMA) whose clipped mean is the published
"Avg. generated tokens per sample", the prompt length of the model's rows in the main
table (Llama 3.1 70B Base, trained with the Llama 3.3 Instruct chat template, takes the
Llama 3.1 8B rows' length), no activation recompute, packing to 4096 tokens, unfused
gradient accumulation (rl_recipes.GRAD_ACCUM_FUSION), the broadcast
sync and vLLM V1's host work with synchronous scheduling. Predicted phases:
generation_s, train_s, logprob_s (policy + reference) and refit = weight_sync_s + the
offload after the passes (offload_s less onload_s). The blog's "Refit" is grpo.py's
prepare_for_generation timer at v0.3.0 (refit_policy_generation: offload_before_refit, the
engine's wake-up, the IPC transfer, offload_after_refit); the onload before the passes
runs in its own timers (logprob_inference_prep, training_prep), which the blog does not
list; "Generation" also holds the engine's sleep (finish_generation: vLLM's weights to host
memory), which the simulator counts in its onload, so it is moved there. Nothing is
fitted to these rows.

    python -m calibration.validate_rl_split
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from calibration import rl_recipes as rr
from calibration import validate_rl as v

CSV = "reference/modern/rl_phase_split.csv"
SPLIT_POINTS = 10.0          # the RL issue's target: generation share within 10 points
PHASES = (("generation", "gen_s", "generation_s"), ("train", "train_s", "train_s"),
          ("logprob", "logprob_s", "logprob_s"), ("refit", "refit_s", None))
# A model with no row in the main table takes another model's prompt length (same chat
# template): Llama 3.1 70B Base ran with the Llama 3.3 70B Instruct tokenizer.
PROMPT_FROM = {"llama3-70b": "llama3-8b"}
# vLLM.LLM's batch limits on an 80 GB GPU (rl_recipes.VLLM_LLM_CLASS): colocated, no async engine.
SCHEDULER = rr.VLLM_LLM_CLASS
# The MoE row's layers at v0.3.0: grpo_math_1B_megatron.yaml sets freeze_moe_router true and
# moe_router_dtype "fp64" (megatron_policy_worker.py applies both); the model config comes
# from NeMo's Qwen3 importer (NeMo 33259f25, nemo/collections/llm/gpt/model/qwen3.py,
# Qwen3MoEConfig): moe_token_dispatcher_type "alltoall", moe_grouped_gemm and
# moe_permute_fusion true, which NeMo RL v0.3.0 does not override.
SPLIT_MOE = {"dispatcher": "alltoall", "router_dtype": rr.ROUTER_DTYPE,
             "freeze_router": rr.FREEZE_ROUTER, "permute_fusion": True}
# v0.3.0 pins vLLM 0.9.0, whose V1 sampler takes the raw log-probabilities of the 16-bit
# logits (hw_models/data/engines.yaml samplers); later NeMo RL asks vLLM >= 0.10 for
# processed ones (the rollout's default sampler).
SAMPLER = "vllm-v1-raw-logprobs"


def load() -> pd.DataFrame:
    return pd.read_csv(resources.files("calibration").joinpath(CSV), comment="#")


def prompt_len(arch: str) -> int:
    """The median prompt length of the main table's GRPO rows of the model (validate_rl)."""
    main = v.load()
    arch = PROMPT_FROM.get(arch, arch)
    rows = [x for x in main.itertuples() if rr.model_id(x) == arch and x.algorithm == "GRPO"
            and x.gpu_type in v.SYSTEMS]
    return v.prompt_tokens(main, rows[0])


def build(r):
    from sim import scenario
    prompt = prompt_len(r.arch_id)
    cap = int(r.train_max_seq_len) - prompt
    median = v.median_for_mean(float(r.gen_avg_seq_len), cap, v.RESPONSE_SIGMA)
    moe = r.train_ep > 1
    train = {"global_batch": int(r.train_global_batch_samples), "micro_batch": 1,
             "logprob_micro_batch": int(r.logprob_batch),
             "parallel": {"tp": int(r.train_tp), "pp": int(r.train_pp), "ep": int(r.train_ep),
                          "zero": 1, "sequence_parallel": bool(r.sequence_parallel) and r.train_tp > 1},
             "recompute": "none", "max_seq_len": int(r.train_max_seq_len),
             "overlap_param_gather": True, "grad_reduce_bytes": 2,
             "grad_accumulation_fusion": rr.GRAD_ACCUM_FUSION,
             **({"moe": SPLIT_MOE} if moe else {})}
    work = {"kind": "rl", "algorithm": "grpo", "model": r.arch_id, "precision": "bf16",
            "prompts_per_step": int(r.prompts), "samples_per_prompt": int(r.generations),
            "prompt_len": prompt,
            "response_len": {"dist": "lognormal", "median": median, "sigma": v.RESPONSE_SIGMA,
                             "high": cap},
            "rollout": {"parallel": {"tp": int(r.gen_tp)}, "scheduler": SCHEDULER,
                        "kv_cache": {"gpu_memory_utilization": float(r.gen_mem_util)},
                        "engine_host": "vllm-v1", "sampler": SAMPLER},
            "train": train, "placement": "colocated", "sync": "broadcast"}
    system = v.SYSTEMS[r.gpu_type]
    from hw_models import catalog
    nodes = max(1, int(r.num_gpus) // catalog.system(system).gpus_per_node)
    return scenario.parse({"name": f"{r.arch_id}-{r.num_gpus}-split",
                           "cluster": {"system": system, "nodes": nodes}, "workload": work},
                          "rl split row")


def predicted(m: dict, extra: dict) -> dict:
    """The simulator's figures for the blog's columns: its refit is the sync and the
    offload after the passes, not the onload before them (``extra["onload_s"]``); its
    generation holds the engine's sleep (``finish_generation`` runs inside v0.3.0's
    generation timer), which the simulator counts in the onload."""
    out = {name: m[key] for name, _, key in PHASES if key}
    out["generation"] += extra["engine_sleep_s"]
    out["refit"] = m["weight_sync_s"] + m["offload_s"] - extra["onload_s"]
    return out


def run() -> pd.DataFrame:
    from sim.rl import simulate_rl
    rows = []
    for r in load().itertuples():
        res = simulate_rl(build(r))
        m = res.metrics
        p = predicted(m, res.extra)
        row = {"model": r.model, "gpus": int(r.num_gpus), "published_s": float(r.step_time_s),
               "predicted_s": round(m["step_time_s"], 1),
               "error_pct": round(100 * (m["step_time_s"] / r.step_time_s - 1), 1)}
        for name, col, _ in PHASES:
            pub = float(getattr(r, col))
            row[f"{name}_pub"] = pub
            row[f"{name}_pred"] = round(p[name], 1)
            row[f"{name}_err_pct"] = round(100 * (p[name] / pub - 1), 1)
        row["gen_share_pub"] = round(100 * r.gen_s / r.step_time_s, 1)
        row["gen_share_pred"] = round(100 * p["generation"] / m["step_time_s"], 1)
        row["gen_share_diff_pts"] = round(row["gen_share_pred"] - row["gen_share_pub"], 1)
        rows.append(row)
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> dict:
    diff = df.gen_share_diff_pts.abs()
    return {"split_rows": len(df), "split_within_10_points": int((diff <= SPLIT_POINTS).sum()),
            "split_max_diff_points": round(float(diff.max()), 1),
            "split_step_median_abs_error_pct": round(float(df.error_pct.abs().median()), 1),
            **{f"split_{name}_median_error_pct": round(float(np.median(df[f"{name}_err_pct"])), 1)
               for name, _, _ in PHASES}}


def table(df: pd.DataFrame) -> str:
    s = summary(df)
    text = df.to_string(index=False)
    text += (f"\n\ngeneration share of the step: {s['split_within_10_points']} of {s['split_rows']} "
             f"rows within {SPLIT_POINTS:.0f} points (max {s['split_max_diff_points']:.1f}); step "
             f"time median |error| {s['split_step_median_abs_error_pct']:.1f}%; median phase error: "
             + ", ".join(f"{n} {s[f'split_{n}_median_error_pct']:+.0f}%" for n, _, _ in PHASES))
    return text


if __name__ == "__main__":
    print(table(run()))
