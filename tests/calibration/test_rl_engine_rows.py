"""Each NeMo RL row's rollout engine: vLLM's scheduling mode of the table's pinned version
and the DAPO recipe's enforce_eager (calibration/rl_recipes.py)."""

from calibration import rl_recipes as rr
from calibration import validate_rl as v


def test_rollout_engine_follows_the_tables_vllm():
    df = v.load()
    seen = set()
    for r in df.itertuples():
        if v.skip_reason(r) or v.prompt_tokens(df, r) is None:
            continue
        rollout = v.build(r, v.prompt_tokens(df, r)).workload.rollout
        # vLLM 0.11.x (v0.4, v0.5): synchronous scheduling; 0.17.1 (v0.6): asynchronous.
        expected = "vllm-v1-async" if r.source_id == "NEMORL-v0.6" else "vllm-v1"
        assert rollout.engine_host == expected
        assert rollout.enforce_eager == (r.algorithm == "DAPO")
        seen.add((r.source_id, rollout.engine_host))
    assert {s for s, _ in seen} == set(rr.COMMITS)
