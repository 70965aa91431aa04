"""ZeRO-1 ``overlap_param_gather`` (Megatron-Core --overlap-param-gather): the parameter
all-gather runs bucket by bucket under the first forward instead of after the optimizer."""

import pytest

from sim.scenario import parse
from sim.setup import comm_sms, make_network, resolve_setup
from sim.simulate import simulate
from workloads import training
from workloads.graph import Collective

MODEL = {"layers": 8, "hidden": 6144, "heads": 48, "vocab": 32000, "seq_len": 8192,
         "dropout": False}


def scenario(overlap: bool):
    return parse({"cluster": {"system": "dgx-h100", "nodes": 4},
                  "workload": {"model": MODEL, "global_batch": 32, "micro_batch": 4,
                               "parallel": {"tp": 8, "zero": 1},
                               "overlap_param_gather": overlap},
                  "sim": {"check_memory": False}})


def gathers(sc):
    st = resolve_setup(sc)
    g = training.build(st.model, st.plan, st.options)
    return st, g, [n for n in g.nodes if isinstance(n.op, Collective) and n.op.kind == "all_gather"]


def test_gathers_cover_the_stage_in_buckets_at_step_start():
    st, g, ags = gathers(scenario(True))
    params = training.stage_params(st.model, st.plan, 0)
    assert sum(n.op.bytes for n in ags) == pytest.approx(params * 2)      # bf16 weights
    assert len(ags) == 8                        # each layer (> 40M params / tp) its own bucket
    assert all(not n.deps for n in ags)         # issued at the start, not after the optimizer
    _, _, after = gathers(scenario(False))
    assert len(after) == 1 and after[0].op.bytes == pytest.approx(params * 2)


def test_overlap_hides_all_but_the_first_bucket():
    on, off = simulate(scenario(True), band=False), simulate(scenario(False), band=False)
    st, _, ags = gathers(scenario(True))
    net = make_network(st)
    t = [net.collective_time("all_gather", n.op.bytes, n.op.group) for n in ags]
    _, _, (whole,) = gathers(scenario(False))
    t_whole = net.collective_time("all_gather", whole.op.bytes, whole.op.group)
    # off: the whole gather after the optimizer; on: only the first bucket's gather is
    # exposed (each later bucket is shorter than a layer's forward), and the forward
    # beside each later one loses the SMs of its k CTAs (4 of 132: one GPU per node)
    k = comm_sms(st)(ags[0].op)
    assert k == 4
    lost = sum(t[1:]) * k / st.gpu.sms
    assert off.iteration_time_s - on.iteration_time_s == pytest.approx(
        t_whole - t[0] - lost, rel=0.02)
