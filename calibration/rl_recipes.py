"""What NeMo RL's performance recipes set where the published RL rows are silent.

Each NeMo RL row of reference/modern/rl_posttraining.csv ran one recipe
(NVIDIA-NeMo/RL examples/configs/recipes/llm/performance/<file>, at the commit of its
table: COMMITS); ``recipe`` names the file and gives what it sets once its ``defaults:``
chain is followed down to examples/configs/grpo_math_1B.yaml at the same commit.
``train_block`` turns that into the scenario's ``workload.train``. The per-key sources:

- activation_checkpointing: true in the llama3.1-8b, deepseek-v3, qwen3-235b and dapo
  recipes (Megatron full recompute, one layer at a time); the qwen3-30ba3b and qwen3-32b
  recipes leave grpo_math_1B.yaml's false at all three commits;
- logprob_batch_size (packed rows of max_total_sequence_length per log-prob microbatch):
  llama3.1-8b 2; deepseek-v3 1, its async-1off variants 2; qwen3-235b 1; dapo 1;
  qwen3-30ba3b / qwen3-32b leave grpo_math_1B.yaml's value: 4 at cff17f83b,
  ``${policy.train_micro_batch_size}`` = 1 at 9dbd9adc9 and 69c7ca117;
- sequence_parallel: true in the qwen3-235b, qwen3-32b and dapo recipes;
- sequence_packing.enabled: false in the GB200 deepseek-v3 recipes (-32n4g, -64n4g,
  -64n4g-async-1off): each sample padded to the step's longest;
- moe_token_dispatcher_type: at cff17f83b neither NeMo RL's config nor its
  megatron_policy_worker.py sets it, so Megatron-Bridge's providers at the pinned
  submodule (8aa287df3: deepseek_provider.py, qwen_provider.py) keep "alltoall";
  grpo_math_1B.yaml sets "allgather" at 9dbd9adc9 (applied by
  nemo_rl/models/megatron/setup.py, _apply_moe_config) and "alltoall" at 69c7ca117;
  moe_enable_deepep false;
- MoE router and permutation (grpo_math_1B.yaml, all three commits, applied by
  megatron_policy_worker.py / nemo_rl/models/megatron/setup.py): freeze_moe_router true
  (the router weight gets requires_grad False: no weight-gradient GEMM),
  moe_router_dtype "fp64" (grpo-deepseek-v3-64n8g-fp8-async-1off.yaml sets "fp32" at
  9dbd9adc9 and 69c7ca117), moe_router_load_balancing_type "none";
  moe_permute_fusion false at cff17f83b and 9dbd9adc9, overridden to true by
  grpo-deepseek-v3-32n8g.yaml, grpo-qwen3-235b-16n8g.yaml and dapo-deepseek-v3-64n8g.yaml
  (the derived recipes inherit it), so only the qwen3-30ba3b recipes run unfused; true at
  69c7ca117. Megatron-Core's router casts to moe_router_dtype and the all-gather
  dispatcher's combine reduce-scatters in it (token_dispatcher.py, Megatron-LM 76065f17 and
  d30c3ae5: ``hidden_states.to(self.local_probs.dtype)``);
- expert load (moe.imbalance): with the router frozen and no load-balancing loss the tokens
  per expert follow the pretrained router; DeepSeek-V3's rows take the Zipf law fitted on
  TensorRT-LLM's published DeepSeek-R1 rank imbalance (calibration/expert_load.py), one
  placement of the popular experts per MoE layer; no stored source measures Qwen3-30B-A3B's
  or Qwen3-235B-A22B's, whose rows stay balanced;
- distributed_data_parallel_config (grpo_math_1B.yaml, all three commits):
  grad_reduce_in_fp32 false (2-byte gradient reduction), overlap_param_gather true;
  use_distributed_optimizer true (zero 1); train_micro_batch_size 1 in every recipe;
- vllm_cfg.gpu_memory_utilization: 0.8 on every async (off-policy) recipe, grpo_math_1B.yaml's
  0.6 on the colocated ones, except at 69c7ca117 grpo-deepseek-v3-32n4g / -64n4g (0.3) and
  grpo-qwen3-235b-16n4g (0.4);
- generation.colocated.resources.num_nodes: half the nodes in every async-1off recipe;
  8 of 24 in grpo-qwen3-30ba3b-24n8g-async-8off.yaml;
- training backend: every performance recipe at all three commits (and the v0.3.0 configs of
  the phase-split rows) sets dtensor_cfg.enabled false and megatron_cfg.enabled true (the
  derived recipes inherit it): no row ran DTensor / FSDP2 with Hugging Face model code;
- dynamic_batching.enabled false, sequence_packing.enabled true in grpo_math_1B.yaml at all
  three commits (grpo_math_1B_megatron.yaml at v0.3.0: "We disable dynamic batching for
  Megatron as it is incompatible with Pipeline parallelism"): the log-prob bins hold
  logprob_mb_tokens = max_total_sequence_length x logprob_batch_size tokens, what
  ``logprob_micro_batch`` rows of ``max_seq_len`` hold; each sequence is padded to a
  multiple of tp (cp x 2 x tp with context parallelism) before packing, under tp tokens of
  thousands (not priced); with pp > 1 every microbatch is padded to the longest bin, which
  the simulator's full rows already are;
- gradient_accumulation_fusion: off on every row. grpo_math_1B.yaml sets it false at
  69c7ca117 (applied to the model provider by nemo_rl/models/megatron/community_import.py).
  Earlier it is the model config's default, which needs APEX's fused_weight_gradient_mlp_cuda
  extension: Megatron-Bridge's can_enable_gradient_accumulation_fusion at the submodules of
  cff17f83b (8aa287df3) and 9dbd9adc9 (1e9a459b4) tries only that import (Transformer
  Engine is accepted from a later Megatron-Bridge, whose docstring says the APEX check alone
  "incorrectly returns False" in TE containers), and NeMo's GPTConfig of v0.3.0 defaults to
  _grad_accum_fusion_available, the same import. NeMo RL's environment has no APEX at any of
  these commits (uv.lock lists none; the image is built on nvcr.io/nvidia/cuda-dl-base), so
  every row adds each microbatch's weight gradients to the main gradient in a separate pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from calibration.expert_load import rl_imbalance
from workloads.model import presets

# Rows whose arch_id is empty: the zoo's preset for the published model name.
MODELS = {"Qwen3-32B": "qwen3-32b"}
COMMITS = {"NEMORL-v0.4": "cff17f83b", "NEMORL-v0.5": "9dbd9adc9", "NEMORL-v0.6": "69c7ca117"}
# Colocated rows generate through vllm.LLM (NeMo RL vllm_worker.py), whose batch limits on a
# GPU of >= 70 GiB other than A100 default to max_num_seqs 1024 and max_num_batched_tokens
# 16384 (vLLM engine/arg_utils.py, get_batch_defaults, UsageContext.LLM_CLASS).
VLLM_LLM_CLASS = {"policy": "vllm", "max_batch": 1024, "max_tokens": 16384}
# Recipes with vllm_cfg.async_engine: true (every k-step-off recipe and the colocated
# ASYNC_COLOCATED ones) build the engine with AsyncLLM.from_engine_args (NeMo RL
# vllm_worker_async.py at cff17f83b, 9dbd9adc9, 69c7ca117), whose usage context defaults to
# UsageContext.ENGINE_CONTEXT. vLLM's batch defaults name only LLM_CLASS and
# OPENAI_API_SERVER, so this context falls through to SchedulerConfig's own defaults:
# max_num_seqs 128 and, with chunked prefill (always on in V1), max_num_batched_tokens 2048
# (vLLM 0.11 SchedulerConfig.__post_init__; DEFAULT_MAX_NUM_SEQS / _BATCHED_TOKENS in later
# releases; the fall-through is described in vLLM pull request #37393 and NeMo RL pull
# request #4221). V1 schedules the running decodes first and chunks prefills into what is
# left of that token budget: ``sarathi`` with chunk_size = max_num_batched_tokens.
VLLM_ASYNC_ENGINE = {"policy": "sarathi", "max_batch": 128, "max_tokens": 2048, "chunk_size": 2048}
# file -> vllm_cfg.vllm_kwargs.max_num_seqs where a recipe sets it (9dbd9adc9, 69c7ca117);
# max_num_batched_tokens stays the async engine's 2048.
MAX_NUM_SEQS = {"grpo-deepseek-v3-64n8g-fp8-async-1off.yaml": 32}
# Layers of the first and last pipeline stage (num_layers_in_first/last_pipeline_stage).
FIRST_LAST = {("deepseek-v3", 16): (3, 2), ("deepseek-v3", 8): (7, 6),
              ("qwen3-235b-a22b", 8): (11, 11), ("qwen3-235b-a22b", 4): (23, 23)}
GROUP = 32                  # samples per prompt: 64 prompts x 32 generations
GROUPS = {("deepseek-v3", "GRPO"): 16}     # grpo-deepseek-v3-*: 32 prompts x 16 generations
# The DAPO row's run (tests/test_suites/llm/performance/dapo-deepseek-v3-64n8g.sh at
# 9dbd9adc9) overrides grpo.num_prompts_per_step=64 and num_generations_per_prompt=8 (the
# 512 samples the row lists); its recipe sets batch_multiplier 3: every generation batch
# is 3 x 64 prompts, generated to the end, then filtered (grpo.py, dynamic_sampling). How
# many batches a step took is not published: one (rollout.gen_batches default).
GROUPS[("deepseek-v3", "DAPO")] = 8
BATCH_MULTIPLIER = {("deepseek-v3", "DAPO"): 3.0}
# The same recipe sets policy.generation.vllm_cfg.enforce_eager: true (no CUDA graphs); no
# other performance recipe at the tables' commits (cff17f83b, 9dbd9adc9, 69c7ca117) does.
ENFORCE_EAGER = {("deepseek-v3", "DAPO")}
# The rollout engine's host work per sequence (workload.rollout.engine_host): NeMo RL pins
# vLLM 0.11.0 (cff17f83b) and 0.11.2 (9dbd9adc9), V1 with synchronous scheduling (NeMo RL
# sets no async_scheduling), and vLLM 0.17.1 (69c7ca117), where asynchronous scheduling is
# on by default (hw_models/data/engines.yaml).
ENGINE_HOST = {"NEMORL-v0.4": "vllm-v1", "NEMORL-v0.5": "vllm-v1", "NEMORL-v0.6": "vllm-v1-async"}
# Colocated recipes that set vllm_cfg.async_engine: true (grpo-deepseek-v3-32n8g.yaml,
# grpo-qwen3-235b-16n8g.yaml and the files that inherit them) generate through AsyncLLM
# (VLLM_ASYNC_ENGINE's limits).
ASYNC_COLOCATED = {("deepseek-v3", "GRPO"), ("qwen3-235b-a22b", "GRPO")}
RECIPE_STEM = {"llama3-8b": "grpo-llama3.1-8b-instruct-2n{g}g", "deepseek-v3": "grpo-deepseek-v3-{n}n{g}g",
               "qwen3-235b-a22b": "grpo-qwen3-235b-{n}n{g}g", "qwen3-30b-a3b": "grpo-qwen3-30ba3b-{n}n{g}g",
               "qwen3-32b": "grpo-qwen3-32b-{n}n{g}g"}
# model -> (recompute, logprob_batch_size at cff17f83b, at later commits, sequence parallel)
RECIPE_SETTINGS = {
    "llama3-8b": ("full", 2, 2, False), "deepseek-v3": ("full", 1, 1, False),
    "qwen3-235b-a22b": ("full", 1, 1, True), "qwen3-30b-a3b": ("none", 4, 1, False),
    "qwen3-32b": ("none", 4, 1, True)}
# megatron_cfg.gradient_accumulation_fusion: off at every commit (module docstring)
GRAD_ACCUM_FUSION = False
DISPATCHER = {"NEMORL-v0.4": "alltoall", "NEMORL-v0.5": "allgather", "NEMORL-v0.6": "alltoall"}
# megatron_cfg.freeze_moe_router / moe_router_dtype / moe_permute_fusion (module docstring)
FREEZE_ROUTER = True
ROUTER_DTYPE = "fp64"
ROUTER_DTYPE_FILE = {"grpo-deepseek-v3-64n8g-fp8-async-1off.yaml": "fp32"}
PERMUTE_UNFUSED = {("NEMORL-v0.4", "qwen3-30b-a3b"), ("NEMORL-v0.5", "qwen3-30b-a3b")}
# (commit, file) -> vllm_cfg.gpu_memory_utilization where it is not 0.6 colocated / 0.8 async
MEM_UTIL = {("NEMORL-v0.6", "grpo-deepseek-v3-32n4g.yaml"): 0.3,
            ("NEMORL-v0.6", "grpo-deepseek-v3-64n4g.yaml"): 0.3,
            ("NEMORL-v0.6", "grpo-qwen3-235b-16n4g.yaml"): 0.4}
# file -> generation nodes where the async recipe does not give generation half the nodes
ROLLOUT_NODES = {"grpo-qwen3-30ba3b-24n8g-async-8off.yaml": 8}
# file -> expert_model_parallel_size where the published plan cannot run on the training
# pool: the v0.6 GB200 Qwen3-30B-A3B 1-step-off row lists EP 16, which does not divide its
# 8 training GPUs; its recipe (grpo-qwen3-30ba3b-4n4g-async-1off.yaml) sets 8.
TRAIN_EP = {"grpo-qwen3-30ba3b-4n4g-async-1off.yaml": 8}


@dataclass(frozen=True)
class Recipe:
    """What a row's recipe sets that the row does not publish (defaults chain resolved)."""
    file: str
    recompute: str           # activation_checkpointing: true -> full, unset -> none
    logprob_batch: int       # policy.logprob_batch_size
    sequence_parallel: bool  # megatron_cfg.sequence_parallel
    packing: bool = True     # policy.sequence_packing.enabled
    mem_util: float = 0.6    # vllm_cfg.gpu_memory_utilization
    rollout_gpus: int | None = None   # generation GPUs of an off-policy row
    train_ep: int | None = None       # expert_model_parallel_size, where it overrides the row's


def rollout_scheduler(r) -> dict:
    """The rollout engine's batch limits: vllm.LLM's (VLLM_LLM_CLASS) on the colocated rows
    of synchronous-engine recipes, AsyncLLM's (VLLM_ASYNC_ENGINE) on every recipe with
    async_engine: true, with a recipe's own max_num_seqs (MAX_NUM_SEQS)."""
    key = (model_id(r), r.algorithm)
    if not off_policy_steps(r) and key not in ASYNC_COLOCATED:
        return dict(VLLM_LLM_CLASS)
    seqs = MAX_NUM_SEQS.get(recipe(r).file)
    return VLLM_ASYNC_ENGINE | ({"max_batch": seqs} if seqs else {})


def model_id(r) -> str | None:
    return r.arch_id if isinstance(r.arch_id, str) else MODELS.get(r.model)


def off_policy_steps(r) -> int:
    """'1-step Off' -> 1, '8-step Off' -> 8, 'On policy' -> 0."""
    m = re.match(r"(\d+)-step Off", str(r.policy_mode))
    return int(m.group(1)) if m else 0


def recipe(r) -> Recipe:
    """The recipe of a NeMo RL row: its file, by model, GPUs, mode and precision, and what
    it sets (RECIPE_SETTINGS with the per-recipe exceptions of the module docstring)."""
    model, k = model_id(r), off_policy_steps(r)
    g = 4 if r.gpu_type == "GB200-NVL72" else 8
    n = int(r.num_gpus) // g
    if r.algorithm == "DAPO":     # dapo-deepseek-v3-64n8g.yaml (9dbd9adc9)
        return Recipe("dapo-deepseek-v3-64n8g.yaml", "full", 1, True)
    fp8 = "-fp8" if str(r.precision_train).upper() == "FP8" else ""
    file = RECIPE_STEM[model].format(n=n, g=g) + fp8 + (f"-async-{k}off" if k else "") + ".yaml"
    rc, lp4, lp, sp = RECIPE_SETTINGS[model]
    lp = lp4 if r.source_id == "NEMORL-v0.4" else lp
    if model == "deepseek-v3" and k:        # grpo-deepseek-v3-64n8g-async-1off.yaml: 2
        lp = 2
    mem = MEM_UTIL.get((r.source_id, file), 0.8 if k else 0.6)
    rollout = ROLLOUT_NODES.get(file, n // 2) * g if k else None
    return Recipe(file, rc, lp, sp, packing=not (model == "deepseek-v3" and g == 4),
                  mem_util=mem, rollout_gpus=rollout, train_ep=TRAIN_EP.get(file))


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


def train_block(r, plan: tuple[int, int, int, int]) -> dict:
    """The row's ``workload.train``: its published plan (tp, cp, ep, pp) and its recipe."""
    tp, cp, ep, pp = plan
    rec, model = recipe(r), model_id(r)
    ep = rec.train_ep or ep
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
             "overlap_param_gather": True, "grad_reduce_bytes": 2,
             "grad_accumulation_fusion": GRAD_ACCUM_FUSION}
    if moe:
        block["moe"] = moe_block(r, rec.file)
    return block


def moe_block(r, file: str) -> dict:
    """The row's ``train.moe``: its commit's dispatcher, the recipe's router and
    permutation settings and the model's measured expert load (module docstring)."""
    block = {"dispatcher": DISPATCHER[r.source_id],
             "router_dtype": ROUTER_DTYPE_FILE.get(file, ROUTER_DTYPE),
             "freeze_router": FREEZE_ROUTER,
             "permute_fusion": (r.source_id, model_id(r)) not in PERMUTE_UNFUSED}
    imbalance = rl_imbalance(model_id(r))
    if imbalance is not None:
        block["imbalance"] = imbalance
    return block
