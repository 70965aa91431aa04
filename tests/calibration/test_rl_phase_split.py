"""The phase-split check: NeMo RL v0.3's published GRPO step breakdown, row by row."""

import pandas as pd
import pytest

from calibration import validate_rl_split as split


def test_rows_build_from_the_published_plans():
    rows = {r.arch_id: r for r in split.load().itertuples()}
    assert set(rows) == {"llama3-8b", "llama3-70b", "qwen3-32b", "qwen3-30b-a3b"}
    # every row: 64 prompts x 32 generations, global batch 512, colocated, 4096-token rows
    for r in rows.values():
        w = split.build(r).workload
        assert (w.prompts_per_step, w.samples_per_prompt, w.train.global_batch) == (64, 32, 512)
        assert w.colocated and w.train.max_seq_len == 4096
        assert (w.train.parallel.tp, w.train.parallel.pp, w.train.parallel.ep) == (
            r.train_tp, r.train_pp, r.train_ep)
        assert w.rollout.parallel.tp == r.gen_tp
        assert w.response_len.high == 4096 - w.prompt_len
        # v0.3.0 pins vLLM 0.9.0: raw log-probabilities of the 16-bit logits
        assert w.rollout.sampler == "vllm-v1-raw-logprobs"
    # the 70B base model takes the Llama 3.1 8B rows' prompt length (131 tokens, see
    # tests/calibration/test_validation_rl.py); Qwen3-30B-A3B its own rows' (107)
    assert split.build(rows["llama3-70b"]).workload.prompt_len == 131
    assert split.build(rows["qwen3-30b-a3b"]).workload.prompt_len == 107
    assert split.build(rows["qwen3-30b-a3b"]).workload.train.parallel.sequence_parallel


def test_moe_row_passes_its_router_and_permutation_to_the_training_passes():
    # v0.3.0: grpo_math_1B_megatron.yaml freezes the router in fp64; NeMo's Qwen3MoEConfig
    # keeps the all-to-all dispatcher and the fused permutation.
    from hw_models import catalog
    from sim import rl
    sc = split.build(next(r for r in split.load().itertuples() if r.arch_id == "qwen3-30b-a3b"))
    moe = sc.workload.train.moe
    assert (moe.dispatcher, moe.router_dtype, moe.freeze_router, moe.permute_fusion) == (
        "alltoall", "fp64", True, True)
    system = catalog.system(sc.cluster.system)
    pools = rl.pool_sizes(sc.workload, 64, system.gpus_per_node)
    for forward in (False, True):
        sub = rl.train_scenario(sc, system, pools, sc.workload.model, 4096, 64, forward=forward)
        assert sub.workload.moe == moe


def test_split_summary_by_hand():
    # generation shares 50 vs 55 (5 points) and 40 vs 52 (12 points): one row within 10
    df = pd.DataFrame({"gen_share_diff_pts": [5.0, -12.0], "error_pct": [-10.0, -30.0],
                       **{f"{n}_err_pct": [-20.0, -40.0] for n, _, _ in split.PHASES}})
    s = split.summary(df)
    assert s["split_rows"] == 2 and s["split_within_10_points"] == 1
    assert s["split_max_diff_points"] == 12.0
    assert s["split_step_median_abs_error_pct"] == 20.0
    assert s["split_train_median_error_pct"] == -30.0


@pytest.mark.slow      # one colocated GRPO step of 2048 rollouts
def test_llama_row_reports_each_phase(monkeypatch):
    one = split.load().iloc[:1]
    monkeypatch.setattr(split, "load", lambda: one)
    r = split.run().iloc[0]
    assert r.published_s == 112 and r.generation_pub == 58 and r.train_pub == 28
    assert r.gen_share_pub == pytest.approx(100 * 58 / 112, abs=0.05)
    assert r.gen_share_diff_pts == pytest.approx(r.gen_share_pred - r.gen_share_pub, abs=0.05)
    assert r.train_err_pct == pytest.approx(100 * (r.train_pred / 28 - 1), abs=0.3)
    assert 0 < r.generation_pred < r.predicted_s
