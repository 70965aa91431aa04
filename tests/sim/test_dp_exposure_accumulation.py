"""Data-parallel exposure of a Megatron step with gradient accumulation (PP=1, ZeRO-1,
--overlap-grad-reduce, --overlap-param-gather): the gradient reduce-scatter overlaps only
the last microbatch's backward (Megatron-Core runs the others under ``no_sync``) and the
parameter all-gather only the first forward. When every bucket's collective outlasts its
layer's compute, the DP channel paces both ends of the step, so by hand

    T = sum(AG) + f_last + (C - f_0 - b_last) + b_first + sum(RS) + optimizer

(f_0: the first microbatch's forward, f_last its last layer; b_last: the last microbatch's
backward, b_first its first layer; C: all compute before the optimizer). More microbatches
add only their own compute: nothing more of the DP traffic is hidden
(docs/accuracy.md, weak scaling 16B-70B)."""

import pytest

from sim.costs import OpCosts
from sim.scenario import parse
from sim.setup import comm_sms, host_bw, make_network, paced_compute, play, resolve_setup
from workloads import training
from workloads.graph import Collective

# 56.6M parameters per layer and TP rank (> the 40M-element bucket: one layer per bucket)
MODEL = {"layers": 4, "hidden": 6144, "heads": 48, "vocab": 32000, "seq_len": 4096,
         "activation": "gelu"}


def setup_and_graph(global_batch: int):
    sc = parse({"cluster": {"system": "dgx-h100", "nodes": 4},
                "workload": {"model": MODEL, "global_batch": global_batch, "micro_batch": 1,
                             "parallel": {"tp": 8, "sequence_parallel": True, "zero": 1},
                             "overlap_grad_reduce": True, "overlap_param_gather": True},
                "sim": {"fidelity": "analytical", "check_memory": False}})
    st = resolve_setup(sc)
    return st, training.build(st.model, st.plan, st.options)


def costs(st) -> OpCosts:
    """The engine's prices (sim.setup.build_engine), NCCL's CTAs beside the blocks' compute
    included; in this regime the DP collectives' CTAs slow only compute they hide."""
    c = OpCosts(paced_compute(st.gpu, st.profile, 1.0, st.layout.world_size),
                make_network(st), host_bw(st.system))
    c.comm_sms = comm_sms(st)
    return c


def test_dp_channel_paces_both_ends_of_the_step():
    st, g = setup_and_graph(16)              # DP 4 (one GPU per node): 4 microbatches
    assert st.plan.microbatches == 4
    c = costs(st)
    mine = [n for n in g.nodes if n.rank == g.nodes[0].rank]
    t = {n.id: c.op_time(n.op) for n in mine}
    named = {n.name: n for n in mine}
    rs = [n for n in mine if isinstance(n.op, Collective) and n.op.kind == "reduce_scatter"]
    ag = [n for n in mine if isinstance(n.op, Collective) and n.op.kind == "all_gather"]
    assert len(rs) == len(ag) == MODEL["layers"]
    f0 = [named[f"F0_c0_l{i}"] for i in range(4)]
    b_last = [named[f"B3_c0_l{i}"] for i in (3, 2, 1, 0)]          # backward order
    opt = named["optimizer"]
    compute = sum(t[n.id] for n in mine if n.stream == "compute" and n is not opt)
    # the regime of the closed form: each collective longer than its layer's compute
    assert min(t[n.id] for n in rs) > max(t[n.id] for n in b_last)
    assert min(t[n.id] for n in ag) > max(t[n.id] for n in f0)
    by_hand = (sum(t[n.id] for n in ag) + t[f0[-1].id]
               + compute - sum(t[n.id] for n in f0) - sum(t[n.id] for n in b_last)
               + t[b_last[0].id] + sum(t[n.id] for n in rs) + t[opt.id])
    assert play(st, g) == pytest.approx(by_hand, rel=1e-6)


def test_more_microbatches_hide_no_more_dp_traffic():
    st4, g4 = setup_and_graph(16)
    st8, g8 = setup_and_graph(32)            # 8 microbatches
    c = costs(st8)
    middle = [n for n in g8.nodes if n.rank == g8.nodes[0].rank and n.name in ("F1_c0", "B1_c0")]
    assert len(middle) == 2
    per_microbatch = sum(c.op_time(n.op) for n in middle)
    assert play(st8, g8) - play(st4, g4) == pytest.approx(4 * per_microbatch, rel=1e-6)
