"""Shared experts under tensor parallelism: Megatron-Core's SharedExpertMLP is a dense MLP
on the TP group (FFN split over tp, the sequence gathered before fc1 and reduce-scattered
after fc2), and its fc1 re-gathers its input for the weight gradient, as the Mamba in_proj
does (both column-parallel TE linears under sequence parallelism)."""

from __future__ import annotations

from workloads.graph import Collective, CommGroup, Overlap
from workloads.layer_mamba import mamba_backward
from workloads.layers import LayerContext
from workloads.model import presets
from workloads.moe_layers import make_context, moe_backward, moe_forward
from workloads.stage_ops import sp_backward_gathers

H, FS, S = 4096, 5376, 8192          # Nemotron 3 Super: hidden, shared FFN, sequence


def ctx(tp: int, model: str = "nemotron-3-super") -> LayerContext:
    return LayerContext(presets()[model], 1, tp, tp > 1, "bf16", CommGroup(tuple(range(tp)), "tp"),
                        moe=make_context(tuple(range(0, 64 * tp, tp)), (0,), "alltoall", 1.0, 64))


def by_name(ops):
    return {getattr(o, "name", ""): o for o in ops}


def test_tp1_shared_expert_has_no_collectives():
    ops = by_name(moe_forward(ctx(1)))
    assert ops["shared_fc1"].shape == (S, FS, H) and ops["shared_fc2"].shape == (S, H, FS)
    assert "tp_ag_shared" not in ops and "tp_shared_out" not in ops


def test_tp2_splits_the_ffn_over_the_gathered_sequence():
    fwd = moe_forward(ctx(2))
    names = [getattr(o, "name", "") for o in fwd]
    i = names.index("tp_ag_shared")
    assert names[i:i + 5] == ["tp_ag_shared", "shared_fc1", "shared_activation", "shared_fc2",
                              "tp_shared_out"]
    ops = by_name(fwd)
    assert ops["shared_fc1"].shape == (S, FS // 2, H) and ops["shared_fc2"].shape == (S, H, FS // 2)
    # each rank does half of tp 1's shared-expert FLOPs
    one = by_name(moe_forward(ctx(1)))
    assert ops["shared_fc1"].flops == one["shared_fc1"].flops / 2
    # the (8192, 4096) bf16 activation: 64 MiB gathered, and reduce-scattered back
    ag, rs = ops["tp_ag_shared"], ops["tp_shared_out"]
    assert isinstance(ag, Collective) and ag.kind == "all_gather" and ag.bytes == 2 * S * H
    assert rs.kind == "reduce_scatter" and rs.bytes == 2 * S * H


def test_tp2_backward_conjugates_and_regathers():
    c = ctx(2)
    bwd = moe_backward(c)
    ops = by_name(bwd)
    assert ops["tp_shared_out_bwd"].kind == "all_gather"
    assert ops["tp_shared_in_bwd"].kind == "reduce_scatter"
    got = [o for o in sp_backward_gathers(c, bwd) if isinstance(o, Overlap)]
    assert [o.main[0].name for o in got] == ["shared_fc1_dgrad"]
    assert got[0].hidden[0].bytes == 2 * S * H


def test_mamba_in_proj_regathers_its_input_under_sp():
    c = ctx(2)
    got = [o for o in sp_backward_gathers(c, mamba_backward(c)) if isinstance(o, Overlap)]
    assert [o.main[0].name for o in got] == ["mamba_in_proj_dgrad"]
    assert got[0].hidden[0].kind == "all_gather" and got[0].hidden[0].bytes == 2 * S * H
