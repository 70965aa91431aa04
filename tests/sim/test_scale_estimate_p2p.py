"""The sweep's closed form prices the pipeline transfers that sit on the compute stream
(workloads/pipeline_sync.py): the receiver's TP all-gather without sequence parallelism
(the closed form stays within 2% of the discrete-event play) and blocking sends, which it
charges in full on every pass (an upper bound: in the play part of a send overlaps the
wait for the stage's next input)."""

import pytest

from sim.scenario import parse
from sim.setup import resolve_setup
from sim.simulate import simulate
from sim.sweep.estimate import from_setup


def _scenario(blocking: bool):
    return parse({"name": "p2p", "cluster": {"system": "dgx-a100", "nodes": 4},
                  "workload": {"kind": "training", "global_batch": 32, "micro_batch": 1,
                               "precision": "fp16",
                               "model": {"layers": 16, "hidden": 4096, "heads": 32,
                                         "vocab": 51200, "seq_len": 2048},
                               "parallel": {"tp": 8, "pp": 4, "vpp": 2,
                                            "schedule": "interleaved"},
                               "recompute": "full", "attention": "unfused",
                               "overlap_grad_reduce": False, "p2p_blocking": blocking},
                  "sim": {"fidelity": "analytical"}}, "p2p")


def test_closed_form_follows_the_play_with_the_tp_gather():
    sc = _scenario(False)
    des = simulate(sc, band=False, residuals=False).iteration_time_s
    est = from_setup(resolve_setup(sc)).iteration_time(resolve_setup(sc).plan)
    assert est == pytest.approx(des, rel=0.02)


def test_blocking_sends_bounded_from_above():
    des = [simulate(_scenario(b), band=False, residuals=False).iteration_time_s
           for b in (False, True)]
    est = [from_setup(s).iteration_time(s.plan) for s in
           (resolve_setup(_scenario(b)) for b in (False, True))]
    assert des[1] > des[0]
    # every send charged in full: at least what the play loses, at most twice it
    assert des[1] - des[0] <= est[1] - est[0] <= 2 * (des[1] - des[0])
