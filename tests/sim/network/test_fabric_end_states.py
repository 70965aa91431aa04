"""A batch's flows ending in steps, with the shared end states of a plan key (sim/network/
fabric.py, Flows): hand-computed times, and the same times with and without a key."""

import numpy as np
import pytest
import simpy

from sim.network.fabric import Fabric

# Link 0 (10 B/s) carries flows a and b, link 1 (4 B/s) carries c alone.
CAP = np.array([10.0, 4.0])
ROW, LINKS = np.array([0, 1, 2]), np.array([0, 0, 1])
NBYTES = np.array([10.0, 30.0, 4.0])


def ends(key, repeats=3) -> list[float]:
    """When each of ``repeats`` back-to-back batches (a, b, c) is done."""
    env = simpy.Environment()
    fab = Fabric(env, CAP)
    out = []

    def sender():
        for _ in range(repeats):
            yield fab.start(ROW, LINKS, NBYTES, np.ones(3), None, key)
            out.append(env.now)
    env.process(sender())
    env.run()
    return out


def test_flows_end_in_steps_by_hand():
    # a and b share link 0 at 5 B/s: c ends at 1 s (4 B at 4 B/s), a at 2 s; b then runs
    # alone at 10 B/s for its last 20 B: the batch is done at 4 s, the next at 8 s, ...
    assert ends(None) == pytest.approx([4.0, 8.0, 12.0])


def test_a_keyed_plan_replays_its_end_states_exactly():
    # The 2nd and 3rd batches reuse the first one's end states and cached rates.
    keyed = ends(("plan", 0))
    assert keyed == pytest.approx([4.0, 8.0, 12.0])
    assert keyed == ends(None)


def test_flows_must_be_listed_flow_by_flow():
    fab = Fabric(simpy.Environment(), CAP)
    with pytest.raises(ValueError, match="flow by flow"):
        fab.start(np.array([1, 0, 2]), LINKS, NBYTES, np.ones(3))
