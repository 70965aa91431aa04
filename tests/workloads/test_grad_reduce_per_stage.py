"""``grad_reduce_per_stage`` (workloads/param_sync.py ``stage_backward_ends``): with the
gradient reduction after the backward (``overlap_grad_reduce: false``), each virtual
stage's buckets wait for that stage's own last backward (PyTorch pipelining's FSDP
``post_backward`` per stage), not for the rank's last compute. By hand on 8 layers, PP 2 x
2 virtual stages (2 layers a chunk), one bucket per layer (56.6M parameters a TP rank
against the 40M-element bucket)."""

import pytest

from sim.scenario import parse
from sim.setup import resolve_setup
from workloads import training

MODEL = {"layers": 8, "hidden": 6144, "heads": 48, "vocab": 32000, "seq_len": 4096,
         "activation": "gelu"}


def graph(per_stage: bool):
    sc = parse({"cluster": {"system": "dgx-h100", "nodes": 4},
                "workload": {"model": MODEL, "global_batch": 16, "micro_batch": 1,
                             "parallel": {"tp": 8, "pp": 2, "vpp": 2, "zero": 1,
                                          "sequence_parallel": True},
                             "overlap_grad_reduce": False, "grad_reduce_per_stage": per_stage},
                "sim": {"fidelity": "analytical", "check_memory": False}})
    st = resolve_setup(sc)
    return training.build(st.model, st.plan, st.options)


def buckets(g, rank: int = 0):
    return [n for n in g.nodes if n.rank == rank and n.name.startswith("dp_bucket")]


def last_backward(g, chunk: int, rank: int = 0) -> int:
    """The node ending the chunk's last microbatch's backward on the rank."""
    nodes = [n for n in g.nodes if n.rank == rank and n.stream == "compute"
             and n.meta.get("chunk") == chunk and n.name.startswith("B")]
    return max(nodes, key=lambda n: n.id).id


@pytest.mark.parametrize("per_stage", [False, True])
def test_bucket_waits_for_its_stage_or_the_step(per_stage):
    g = graph(per_stage)
    b = buckets(g)
    assert len(b) == 4                # 2 chunks x 2 layers (the embedding table in the last)
    last_compute = max(n.id for n in g.nodes if n.rank == 0 and n.stream == "compute"
                       and not n.name.startswith("optimizer"))
    end1, end0 = last_backward(g, 1), last_backward(g, 0)
    assert end1 < end0 == last_compute            # chunk 1's backwards run first on rank 0
    # buckets in backward order: chunk 1's two layers, then chunk 0's
    want = [end1, end1, end0, end0] if per_stage else [last_compute] * 4
    assert [n.deps for n in b] == [(d,) for d in want]
