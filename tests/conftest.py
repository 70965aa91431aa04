import pytest

from sim import scenario


@pytest.fixture
def small_scenario():
    """A 7.5B model on 2 DGX A100 nodes: small enough to simulate in well under a second."""
    return scenario.parse({
        "name": "small",
        "cluster": {"system": "dgx-a100", "nodes": 2},
        "workload": {"model": "megatron-7.5b", "global_batch": 32, "micro_batch": 1,
                     "precision": "bf16", "parallel": {"tp": 4, "pp": 2},
                     "recompute": "selective"},
    })
