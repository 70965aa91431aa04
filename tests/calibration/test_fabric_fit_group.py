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
    # echo 16 GPUs on 2 nodes of 8 and 64 on 8 nodes of 8: the reference is the fewest-node
    # group, analytical.FIT_GROUP, recorded as None (the ramp reference depends on the
    # GPUs per node only, 8 in both)
    sweeps = fabric_sweeps("a100")["network"]
    assert sorted(s.nodes for s in sweeps) == [2, 8]
    assert network_fit_group(sweeps) is None
    assert network_fit_group(sweeps[::-1]) is None


def test_sweeps_of_another_gpus_per_node_are_refused():
    from dataclasses import replace
    (s16, s64) = sorted(fabric_sweeps("a100")["network"], key=lambda s: s.gpus)
    with pytest.raises(ClusterSimError, match="one fit group"):
        network_fit_group([s16, replace(s64, gpus_per_node=4)])


def test_sweeps_of_two_systems_are_refused():
    both = fabric_sweeps("h100")["network"] + fabric_sweeps("a100")["network"]
    with pytest.raises(ClusterSimError, match="one fit group"):
        network_fit_group(both)
