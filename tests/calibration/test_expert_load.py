"""The RL rows' expert load: a Zipf law fitted on TensorRT-LLM's published DeepSeek-R1
rank imbalance (calibration/reference/modern/moe_expert_load.csv)."""

import numpy as np
import pytest

from calibration import expert_load, rl_recipes, validate_rl


def test_fit_reproduces_the_published_rank_imbalance():
    # Table 1 of TensorRT-LLM's blog 4: no EPLB, EP 32, imbalance ratio 1.564 by rank.
    s = expert_load.fitted_exponent("deepseek-v3")
    assert expert_load.rank_max_mean(s, 256, 32) == pytest.approx(2.564, abs=0.01)
    # Cross-check on the other published column (by expert slot: 10.948, max/mean
    # 11.948): the fitted law's busiest expert is E / H(E, s), within 20% of it.
    e_over_h = 256 / np.sum(1.0 / np.arange(1, 257) ** s)
    assert e_over_h == pytest.approx(11.948, rel=0.2)


def test_fit_recovers_a_known_exponent():
    target = expert_load.rank_max_mean(1.0, 16, 4, placements=200)
    assert expert_load.fit_zipf_exponent(target, 16, 4, placements=200) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError):
        expert_load.fit_zipf_exponent(0.5, 16, 4, placements=10)


def test_rl_rows_take_the_measured_load_only_for_deepseek_v3():
    imb = expert_load.rl_imbalance("deepseek-v3")
    assert imb["kind"] == "zipf" and imb["placements"] == 58      # 61 layers, 3 dense
    assert expert_load.rl_imbalance("qwen3-30b-a3b") is None
    assert expert_load.rl_imbalance("qwen3-235b-a22b") is None
    table = validate_rl.load()
    for r in table.itertuples():
        model = rl_recipes.model_id(r)
        if model not in ("deepseek-v3", "qwen3-30b-a3b"):
            continue
        block = rl_recipes.moe_block(r, rl_recipes.recipe(r).file)
        assert ("imbalance" in block) == (model == "deepseek-v3")
