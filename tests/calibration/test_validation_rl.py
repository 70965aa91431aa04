"""`validate rl`: every published row is reported, with its error or the reason it is skipped."""

import pytest

from calibration import rl_recipes, validate_rl


@pytest.mark.slow      # one full RL step of 2048 rollouts; CI runs it, `make test-fast` skips it
def test_every_row_is_reported_with_error_or_reason(monkeypatch):
    table = validate_rl.load()
    # simulate one row (Llama 3.1 8B, 16 H100, on-policy) and the rows skipped before any
    # simulation (no catalog GPU, context parallelism)
    skipped = [validate_rl.skip_reason(r) is not None for r in table.itertuples()]
    keep = table[skipped | (table.index == table.index[0])]
    monkeypatch.setattr(validate_rl, "load", lambda: keep)
    df = validate_rl.run()
    assert len(df) == len(keep)
    done = df[df.skipped == ""]
    assert len(done) == 1
    r = done.iloc[0]
    assert r.error_pct == pytest.approx(100 * (r.predicted_s - r.published_s) / r.published_s, abs=0.1)
    assert (df[df.skipped != ""].skipped.str.len() > 10).all()
    recs = validate_rl.records(df)
    assert {"suite", "name", "predicted", "published", "error_pct"} <= set(recs[0])
    assert sum(x["predicted"] is not None for x in recs) == 1
    s = validate_rl.summary(df)
    assert s["rows"] == len(keep) and s["simulated"] == 1


def test_response_median_reproduces_the_published_mean_length():
    import numpy as np
    med = validate_rl.median_for_mean(1060, 3965, 0.8)
    x = np.clip(np.random.default_rng(0).lognormal(np.log(med), 0.8, 400_000), None, 3965)
    assert x.mean() == pytest.approx(1060, rel=0.01)


def test_response_median_may_lie_above_the_cap():
    # Qwen3-30B-A3B v0.5: mean 3201 tokens under a cap of 4096 - 107 = 3989. At sigma 0.8 a
    # lognormal whose median is the cap has a clipped mean of only
    # cap x (0.5 + e^(s^2/2) Phi(-s)) = 0.792 x 3989 = 3159 tokens: more than half the
    # responses must be truncated, so the median lies above the cap.
    import numpy as np
    med = validate_rl.median_for_mean(3201, 3989, 0.8)
    assert med > 3989
    x = np.clip(np.random.default_rng(0).lognormal(np.log(med), 0.8, 400_000), None, 3989)
    assert x.mean() == pytest.approx(3201, rel=0.003)
    with pytest.raises(ValueError, match="not below the cap"):
        validate_rl.median_for_mean(4000, 3989, 0.8)


def test_prompt_tokens_follow_nemo_rl_tokens_per_second_definition():
    # NeMo RL: tokens/s/GPU = sum of prompt + response tokens / step time / all GPUs, and
    # "G-Average Seq len" is the mean generation (response) length. v0.4 Llama 3.1 8B on
    # 16 H100, on policy: 1562 x 97.7 s x 16 / 2048 samples = 1192.2 tokens per sample,
    # 1060 of them generated: 132 prompt tokens. The row's input is the median over the
    # model's rows of the same algorithm (5 Llama rows: 132, 130, 127, 131, 136 and the
    # two GB200 rows 128, 133 -> 131).
    table = validate_rl.load()
    first = next(table.itertuples())
    assert validate_rl.step_tokens_per_sample(first) == pytest.approx(1562 * 97.7 * 16 / 2048)
    assert validate_rl.prompt_tokens(table, first) == 131


def test_parallel_lists_are_read_as_published():
    assert validate_rl._ints("[TP,CP,EP,PP,VPP]=[2,1,8,1,n/a]") == [2, 1, 8, 1]
    assert validate_rl._ints("[TP,PP]=[32,1]") == [32, 1]


def test_training_plans_follow_the_rows_and_recipes():
    # 7 numbers under a 5-name header (the Llama 3.1 8B rows): the sixth is the pipeline
    # size, as grpo-llama3.1-8b-instruct-2n8g.yaml sets it (2); 5-entry lists as published.
    assert validate_rl.train_plan("[TP,CP,EP,PP,VPP]=[1,1,1,1,1,2,n/a]") == (1, 1, 1, 2)
    assert validate_rl.train_plan("[TP,CP,EP,PP,VPP]=[2,2,16,8,n/a]") == (2, 2, 16, 8)
    # Uneven pipelines: the recipe's first / last stage, the rest split evenly.
    assert rl_recipes.stage_layers("deepseek-v3", 16) == [3] + [4] * 14 + [2]
    assert rl_recipes.stage_layers("qwen3-235b-a22b", 8) == [11] + [12] * 6 + [11]
    assert sum(rl_recipes.stage_layers("qwen3-235b-a22b", 4)) == 94


def rows_by_key(table):
    """The table's rows by (source, algorithm, model, GPU, mode, precision)."""
    return {(r.source_id, r.algorithm, r.model, r.gpu_type, r.policy_mode, r.precision_train): r
            for r in table.itertuples()}


def test_rows_are_filled_from_the_recipes_at_the_tables_commits():
    # No simulation: the scenarios the rows become.
    table = validate_rl.load()
    rows = rows_by_key(table)

    def work(*key):
        r = rows[key]
        return validate_rl.build(r, validate_rl.prompt_tokens(table, r)).workload

    # dapo-deepseek-v3-64n8g.sh: 64 prompts x 8 generations; the recipe's batch_multiplier 3.
    dapo = work("NEMORL-v0.5", "DAPO", "DeepSeek V3", "DGX-H100", "On policy", "BF16")
    assert (dapo.prompts_per_step, dapo.samples_per_prompt) == (64, 8)
    assert dapo.rollout.batch_multiplier == 3.0 and dapo.rollout.gen_batches == 1
    assert dapo.rollout.scheduler.max_batch == 1024          # async_engine: false -> vllm.LLM
    # grpo-qwen3-235b-16n8g.yaml: async_engine true (AsyncLLM's limits), vLLM at 0.6 of HBM.
    q = work("NEMORL-v0.5", "GRPO", "Qwen3-235B", "GB200-NVL72", "On policy", "BF16")
    assert q.rollout.scheduler.max_batch == 128 and q.rollout.kv_cache.gpu_memory_utilization == 0.6
    assert q.rollout.batch_multiplier == 1.0
    # Llama 3.1 8B: 64 x 32, prompt 131 tokens, responses clipped at 4096 - 131.
    llama = work("NEMORL-v0.4", "GRPO", "LLAMA3.1_8B", "DGX-H100", "On policy", "BF16")
    assert (llama.prompts_per_step, llama.samples_per_prompt, llama.prompt_len) == (64, 32, 131)
    assert llama.response_len.high == 4096 - 131


def test_a_model_without_tokens_per_second_has_no_prompt_length():
    table = validate_rl.load()
    first = next(table.itertuples())
    blind = table.assign(tokens_per_s_per_gpu=float("nan"))
    assert validate_rl.prompt_tokens(blind, first) is None


def test_training_passes_follow_each_rows_recipe():
    # Recipes at cff17f83b (v0.4) and 9dbd9adc9 (v0.5), defaults chains resolved by hand.
    table = validate_rl.load()
    rows = rows_by_key(table)

    def train(*key):
        r = rows[key]
        return rl_recipes.recipe(r), validate_rl.build(r, validate_rl.prompt_tokens(table, r)).workload.train

    # grpo-qwen3-30ba3b-4n8g.yaml: no activation_checkpointing (grpo_math_1B.yaml: false),
    # logprob_batch_size unset: 4 at cff17f83b; the row's tp 2 with experts needs sequence
    # parallelism; v0.4 keeps Megatron-Bridge's alltoall dispatcher.
    rec, t = train("NEMORL-v0.4", "GRPO", "Qwen3-30B3A", "DGX-H100", "On policy", "BF16")
    assert rec.file == "grpo-qwen3-30ba3b-4n8g.yaml"
    assert (t.recompute, t.logprob_micro_batch, t.parallel.tp) == ("none", 4, 2)
    assert t.parallel.sequence_parallel and t.moe.dispatcher == "alltoall"
    # grpo_math_1B.yaml: frozen router in fp64, moe_permute_fusion false (not overridden
    # by the qwen3-30ba3b recipes).
    assert (t.moe.router_dtype, t.moe.freeze_router, t.moe.permute_fusion) == ("fp64", True, False)
    # v0.5: logprob_batch_size = ${policy.train_micro_batch_size} = 1; allgather dispatcher.
    _, t = train("NEMORL-v0.5", "GRPO", "Qwen3-30B3A", "DGX-H100", "1-step Off", "BF16")
    assert (t.recompute, t.logprob_micro_batch, t.moe.dispatcher) == ("none", 1, "allgather")
    assert (t.moe.router_dtype, t.moe.permute_fusion) == ("fp64", False)
    # grpo-qwen3-235b-16n8g.yaml and grpo-deepseek-v3-32n8g.yaml set moe_permute_fusion true
    # (inherited by their async recipes); the FP8 DeepSeek recipe sets moe_router_dtype fp32.
    _, t = train("NEMORL-v0.5", "GRPO", "Qwen3-235B", "DGX-H100", "1-step Off", "BF16")
    assert (t.moe.router_dtype, t.moe.permute_fusion) == ("fp64", True)
    rec, t = train("NEMORL-v0.5", "GRPO", "DeepSeek V3", "DGX-H100", "1-step Off", "FP8")
    assert rec.file == "grpo-deepseek-v3-64n8g-fp8-async-1off.yaml"
    assert (t.moe.router_dtype, t.moe.freeze_router, t.moe.permute_fusion) == ("fp32", True, True)
    # Llama 3.1 8B: activation_checkpointing true, logprob_batch_size 2; grpo_math_1B.yaml's
    # DDP config: grad_reduce_in_fp32 false, overlap_param_gather true.
    rec, t = train("NEMORL-v0.5", "GRPO", "LLAMA3.1_8B", "DGX-H100", "1-step Off", "FP8")
    assert rec.file == "grpo-llama3.1-8b-instruct-2n8g-fp8-async-1off.yaml"
    assert (t.recompute, t.logprob_micro_batch, t.grad_reduce_bytes) == ("full", 2, 2)
    assert t.overlap_param_gather and t.moe == type(t.moe)()
    # Qwen3-32B: sequence_parallel true at tp 4, no recompute.
    _, t = train("NEMORL-v0.4", "GRPO", "Qwen3-32B", "DGX-H100", "On policy", "BF16")
    assert t.parallel.sequence_parallel and t.recompute == "none"
    # DeepSeek-V3: the async-1off recipe's logprob_batch_size 2; GB200 recipes
    # (grpo-deepseek-v3-32n4g.yaml) turn sequence packing off.
    _, t = train("NEMORL-v0.5", "GRPO", "DeepSeek V3", "DGX-H100", "1-step Off", "BF16")
    assert (t.logprob_micro_batch, t.max_seq_len, t.recompute) == (2, 1536, "full")
    rec, t = train("NEMORL-v0.5", "GRPO", "DeepSeek V3", "GB200-NVL72", "On policy", "BF16")
    assert rec.file == "grpo-deepseek-v3-32n4g.yaml" and t.max_seq_len is None
    # DAPO: activation_checkpointing true, sequence_parallel true at tp 8.
    rec, t = train("NEMORL-v0.5", "DAPO", "DeepSeek V3", "DGX-H100", "On policy", "BF16")
    assert rec.file == "dapo-deepseek-v3-64n8g.yaml"
    assert t.parallel.sequence_parallel and t.recompute == "full" and t.logprob_micro_batch == 1


def test_v06_rows_follow_their_recipes_at_69c7ca117():
    table = validate_rl.load()
    rows = {(r.source_id, r.model, r.gpu_type, int(r.num_gpus), r.policy_mode, r.precision_train): r
            for r in table.itertuples()}

    def work(*key):
        r = rows[key]
        return rl_recipes.recipe(r), validate_rl.build(r, validate_rl.prompt_tokens(table, r)).workload

    # grpo-qwen3-30ba3b-24n8g-async-8off.yaml: generation on 8 of 24 nodes, 8 steps off.
    rec, w = work("NEMORL-v0.6", "Qwen3-30B3A", "DGX-H100", 192, "8-step Off", "BF16")
    assert rec.file == "grpo-qwen3-30ba3b-24n8g-async-8off.yaml"
    assert (w.placement.rollout_gpus, w.placement.train_gpus, w.off_policy_steps) == (64, 128, 8)
    assert w.train.moe.dispatcher == "alltoall"                  # grpo_math_1B.yaml at 69c7ca117
    assert (w.train.moe.router_dtype, w.train.moe.permute_fusion) == ("fp64", True)
    # grpo-deepseek-v3-32n4g.yaml at 69c7ca117: vLLM at 0.3 of HBM, no sequence packing.
    rec, w = work("NEMORL-v0.6", "DeepSeek V3", "GB200-NVL72", 128, "On policy", "BF16")
    assert w.rollout.kv_cache.gpu_memory_utilization == 0.3 and w.train.max_seq_len is None
    # The GB200 30B-A3B 1-step-off row lists EP 16 on 8 training GPUs; its recipe sets 8.
    rec, w = work("NEMORL-v0.6", "Qwen3-30B3A", "GB200-NVL72", 16, "1-step Off", "BF16")
    assert rec.file == "grpo-qwen3-30ba3b-4n4g-async-1off.yaml"
    assert (w.placement.train_gpus, w.train.parallel.ep) == (8, 8)


def test_async_engine_rows_get_vllms_engine_context_batch_limits():
    # AsyncLLM.from_engine_args builds its config under UsageContext.ENGINE_CONTEXT, which
    # vLLM's batch defaults do not list: SchedulerConfig's own max_num_seqs 128 and, with
    # chunked prefill, max_num_batched_tokens 2048; V1 fills that budget with decodes first,
    # then prefill chunks (sarathi, chunk = the budget). vllm.LLM (LLM_CLASS) on an H100 or
    # GB200: 1024 / 16384.
    table = validate_rl.load()
    rows = rows_by_key(table)

    def sched(*key):
        r = rows[key]
        return validate_rl.build(r, validate_rl.prompt_tokens(table, r)).workload.rollout.scheduler

    off = sched("NEMORL-v0.5", "GRPO", "Qwen3-30B3A", "DGX-H100", "1-step Off", "BF16")
    assert (off.policy, off.max_batch, off.max_tokens, off.chunk_size) == ("sarathi", 128, 2048, 2048)
    # grpo-deepseek-v3-32n8g.yaml sets async_engine: true for the colocated run too.
    ds = sched("NEMORL-v0.5", "GRPO", "DeepSeek V3", "DGX-H100", "On policy", "BF16")
    assert (ds.max_batch, ds.max_tokens) == (128, 2048)
    # grpo-deepseek-v3-64n8g-fp8-async-1off.yaml: vllm_kwargs.max_num_seqs 32, tokens default.
    fp8 = sched("NEMORL-v0.5", "GRPO", "DeepSeek V3", "DGX-H100", "1-step Off", "FP8")
    assert (fp8.max_batch, fp8.max_tokens) == (32, 2048)
    # Synchronous-engine colocated recipes keep vllm.LLM's limits.
    llama = sched("NEMORL-v0.4", "GRPO", "LLAMA3.1_8B", "DGX-H100", "On policy", "BF16")
    assert (llama.policy, llama.max_batch, llama.max_tokens) == ("vllm", 1024, 16384)
