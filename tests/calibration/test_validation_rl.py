"""`validate rl`: every published row is reported, with its error or the reason it is skipped."""

import pytest

from calibration import validate_rl


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
    assert validate_rl.stage_layers("deepseek-v3", 16) == [3] + [4] * 14 + [2]
    assert validate_rl.stage_layers("qwen3-235b-a22b", 8) == [11] + [12] * 6 + [11]
    assert sum(validate_rl.stage_layers("qwen3-235b-a22b", 4)) == 94


def test_rows_are_filled_from_the_recipes_at_the_tables_commits():
    # No simulation: the scenarios the rows become.
    table = validate_rl.load()
    rows = {(r.source_id, r.algorithm, r.model, r.gpu_type, r.policy_mode, r.precision_train): r
            for r in table.itertuples()}

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
    assert q.rollout.scheduler.max_batch == 256 and q.rollout.kv_cache.gpu_memory_utilization == 0.6
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
