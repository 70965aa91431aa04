"""``sim.ep_flows``: under flow fidelity the MoE all-to-alls inside blocks run as flows on
the fabric. Alone they take exactly their closed-form (contention-free flow) time; with
another pipeline stage's all-to-alls and sends in flight they can only be slower."""

from __future__ import annotations

import copy

import pytest

from sim.scenario import parse
from sim.simulate import simulate

MODEL = {"layers": 4, "hidden": 1024, "heads": 8, "vocab": 1024, "seq_len": 1024,
         "activation": "swiglu", "norm": "rmsnorm", "bias": False, "rope": True,
         "tied_embeddings": False, "moe": {"experts": 16, "top_k": 2, "expert_ffn_hidden": 4096}}


def pair(nodes: int, pp: int, gbs: int, overlap: bool = False,
         dispatcher: str = "alltoall") -> tuple[float, float]:
    sc = {"name": "t", "cluster": {"system": "dgx-h100", "nodes": nodes},
          "workload": {"kind": "training", "model": MODEL, "global_batch": gbs, "micro_batch": 1,
                       "parallel": {"tp": 1, "pp": pp, "ep": 16},
                       "moe": {"overlap": overlap, "dispatcher": dispatcher},
                       "overlap_grad_reduce": False},
          "sim": {"fidelity": "flow"}}
    closed = simulate(parse(sc), band=False)
    played = copy.deepcopy(sc)
    played["sim"]["ep_flows"] = True
    return closed.iteration_time_s, simulate(parse(played), band=False).iteration_time_s


@pytest.mark.parametrize("overlap, dispatcher", [(False, "alltoall"), (True, "alltoall"),
                                                 (False, "deepep"), (True, "deepep")])
def test_alone_equals_closed_form(overlap, dispatcher):
    """DeepEP's calls take their closed form (its kernels are not NCCL's flows)."""
    closed, played = pair(nodes=2, pp=1, gbs=16, overlap=overlap, dispatcher=dispatcher)
    assert played == pytest.approx(closed, rel=1e-9)


def test_concurrent_stages_share_links():
    closed, played = pair(nodes=4, pp=2, gbs=64)
    assert played > closed * (1 + 1e-3)
