"""The flow model's network curves record the group they were fitted on
(calibration/fit_fabric.py network_fit_group), which sets where the tuner reads their ramp on
other groups (sim/network/collectives/tuner.py Tuner.nic_ramp)."""

import pytest

from calibration.build_profiles import fabric_sweeps
from calibration.fit_fabric import network_fit_group
from hw_models.errors import ClusterSimError


def test_h100_network_sweep_is_four_nodes_of_eight():
    # Voltage Park's all_reduce: 32 ranks on 4 nodes of 8 H100
    assert network_fit_group(fabric_sweeps("h100")["network"]) == ["all_reduce", 32, 4, 8]


def test_a100_echo_two_node_group_is_the_default():
    # echo 16 GPUs on 2 nodes of 8: analytical.FIT_GROUP, recorded as None
    assert network_fit_group(fabric_sweeps("a100")["network"]) is None


def test_sweeps_of_two_groups_are_refused():
    both = fabric_sweeps("h100")["network"] + fabric_sweeps("a100")["network"]
    with pytest.raises(ClusterSimError, match="one fit group"):
        network_fit_group(both)
