"""The fp8.fused_amax key: accepted with the tensorwise recipe, one clear line otherwise."""

import pytest

from hw_models.errors import ClusterSimError
from sim import scenario


def fp8_scenario(**fp8):
    w = {"model": "llama3-8b", "seq_len": 8192, "global_batch": 8, "micro_batch": 1,
         "precision": "fp8", "fp8": fp8, "parallel": {"tp": 1, "pp": 1}}
    return {"name": "t", "cluster": {"system": "dgx-h100", "nodes": 1}, "workload": w}


def test_fused_amax_with_tensorwise_is_accepted():
    sc = scenario.parse(fp8_scenario(recipe="tensorwise", fused_amax=True))
    assert sc.workload.fp8.fused_amax is True


@pytest.mark.parametrize("recipe", ["delayed", "blockwise"])
def test_fused_amax_needs_tensorwise(recipe):
    with pytest.raises(ClusterSimError, match="fused_amax applies to recipe tensorwise") as e:
        scenario.parse(fp8_scenario(recipe=recipe, fused_amax=True))
    assert "\n" not in str(e.value)
