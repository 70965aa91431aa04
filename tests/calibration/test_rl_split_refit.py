"""The split check's refit is NeMo RL v0.3.0's prepare_for_generation window: the sync and
the offload after the passes, not the onload before them (logprob_inference_prep and
training_prep, which the blog does not list)."""

from calibration import rl_recipes as rr
from calibration import validate_rl_split as split


def test_refit_takes_the_offload_not_the_onload():
    m = {"generation_s": 40.0, "train_s": 20.0, "logprob_s": 15.0, "weight_sync_s": 0.5,
         "offload_s": 3.0}                   # onload 1.25 + offload 1.75
    p = split.predicted(m, {"onload_s": 1.25, "engine_sleep_s": 0.25})
    # the engine's sleep (part of the onload) runs inside the blog's generation timer
    assert p == {"generation": 40.25, "train": 20.0, "logprob": 15.0, "refit": 0.5 + 1.75}


def test_validation_rows_run_unfused():
    """NeMo RL's environment has no APEX, so every table's rows ran unfused (rl_recipes)."""
    assert rr.GRAD_ACCUM_FUSION is False
    assert all(not split.build(r).workload.train.grad_accumulation_fusion
               for r in split.load().itertuples())

