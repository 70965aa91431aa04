"""FSDP2 under TorchTitan's pipeline (calibration/validate_fp8.py ``titan_pp_fsdp``): every
microbatch's gradients added unsharded into fp32 (FSDP2's ``unsharded_accumulated_grad``,
read 4 + 2 and write 4 bytes a parameter), the reduce-scatters after the last backward,
the parameters gathered again under the next step's first forward. Sizes by hand for
Llama 3.1 405B on TP 8, PP 8 (126 layers of 16384 x 16384 x 2 + 16384 x 1024 x 2 attention
and 3 x 16384 x 53248 MLP weights plus 2 norms; vocabulary 128256)."""

import copy

import pytest

from calibration import validate_long_context, validate_schedules
from calibration.validate_fp8 import titan_pp_fsdp
from sim.scenario import parse
from sim.setup import resolve_setup
from sim.simulate import simulate
from workloads.graph import Block
from workloads.training import build

H, FFN, KV, V, LAYERS, TP = 16384, 53248, 1024, 128256, 126, 8


def _one_f_one_b(interleaved: bool = False):
    case = next(c for c in validate_schedules.cases()
                if c.scenario and ("Interleaved" in c.name) == interleaved)
    return copy.deepcopy(case.scenario)


def test_keys_only_with_pipeline():
    sc = _one_f_one_b()
    w = sc["workload"]
    assert (w["grad_accumulation_fusion"], w["overlap_grad_reduce"], w["grad_reduce_per_stage"],
            w["overlap_param_gather"]) == (False, False, True, True)
    flat = copy.deepcopy(sc)
    for k in ("grad_accumulation_fusion", "overlap_grad_reduce", "grad_reduce_per_stage",
              "overlap_param_gather"):
        flat["workload"].pop(k)
    flat["workload"]["parallel"]["pp"] = 1
    assert titan_pp_fsdp(flat)["workload"].keys() == flat["workload"].keys()
    # the 405B CP rows (PP 8) take them, the 8B rows (no PP) do not
    for c in validate_long_context.cases():
        if c.scenario and c.name.startswith("TorchTitan"):
            pp = c.scenario["workload"]["parallel"]["pp"]
            assert c.scenario["workload"].get("overlap_grad_reduce", True) is (pp == 1)


def test_fp32_accumulation_bytes_by_hand():
    s = resolve_setup(parse(_one_f_one_b(), "acc"))
    assert s.options.grad_accum_bytes == 4 + 2 + 4
    layer = H * H * 2 + H * KV * 2 + 3 * H * FFN + 2 * H
    assert s.model.params_per_layer == layer
    g = build(s.model, s.plan, s.options)
    got = sum(o.bytes for n in g.nodes if isinstance(n.op, Block)
              for o in n.op.ops if getattr(o, "name", "") == "accumulate_wgrad")
    # 8 microbatches, every layer and the untied embedding and output tables, per TP rank
    per_mb = 10 * (LAYERS * layer + 2 * V * H) / TP
    assert s.plan.microbatches == 8
    assert got == pytest.approx(8 * per_mb, rel=1e-9)


@pytest.mark.slow
def test_reduce_scatters_after_last_backward_and_gathers_at_start():
    res = simulate(parse(_one_f_one_b(), "order"))
    tl = res.timeline[res.timeline["rank"] == 0]
    backward = tl[(tl.stream == "compute") & tl.name.str.startswith("B")]
    rs = tl[tl.name.str.startswith("dp_bucket")]
    ag = tl[tl.name == "param_all_gather"]
    assert len(rs) > 1 and rs.start.min() >= backward.end.max()
    forward0 = tl[tl.name == "F0_c0_l0"]
    assert len(ag) > 0 and ag.start.min() == 0.0 and ag.start.min() < forward0.end.min()


@pytest.mark.slow
def test_interleaved_later_stage_reduces_under_earlier_backwards():
    """Two stages per rank: rank 0 runs stage 8's backwards (chunk 1) before stage 0's;
    stage 8's reduce-scatters start when its last backward ends, under stage 0's."""
    res = simulate(parse(_one_f_one_b(interleaved=True), "per-stage"))
    tl = res.timeline[res.timeline["rank"] == 0]
    comp = tl[tl.stream == "compute"]
    end_c1 = comp[comp.name.str.startswith("B7_c1")].end.max()
    end_c0 = comp[comp.name.str.startswith("B7_c0")].end.max()
    rs = tl[tl.name.str.startswith("dp_bucket")].sort_values("start")
    # 8 layers of chunk 1 (stage 8), then 7 of chunk 0 with the embedding's table
    assert len(rs) == 15
    assert rs.start.iloc[0] == pytest.approx(end_c1) and end_c1 < end_c0
    assert rs.start.iloc[8] >= end_c0
