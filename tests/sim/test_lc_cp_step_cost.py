"""TorchTitan's all-gather CP at a fixed 32K local tokens per GPU (Llama 3.1 8B on one
Grand Teton host): a CP row's step is the CP 1 row's plus cp - 1 load-balanced
non-causal steps of equal work, so the simulated cost per extra step is the same at
CP 4 and CP 8 (docs/long_context.md compares it with the published rows)."""

import pytest
import yaml

from sim.scenario import Scenario
from sim.simulate import simulate

EXAMPLE = "examples/torchtitan_llama3_8b_256k_cp8.yaml"


def step_time(cp: int) -> float:
    with open(EXAMPLE) as f:
        d = yaml.safe_load(f)
    d["workload"]["seq_len"] = 32768 * cp
    d["workload"]["parallel"]["cp"] = cp
    d["workload"]["global_batch"] = 8 // cp
    return simulate(Scenario.model_validate(d), band=False).iteration_time_s


def test_cost_per_cp_step_does_not_depend_on_cp():
    t1, t4, t8 = step_time(1), step_time(4), step_time(8)
    x4, x8 = (t4 - t1) / 3, (t8 - t1) / 7
    assert x8 == pytest.approx(x4, rel=0.03)
    # a step is attention only (no GEMMs): less than the whole CP 1 step, and more than
    # half of it, as attention is most of a step at 32K tokens
    assert 0.5 * t1 < x8 < t1
