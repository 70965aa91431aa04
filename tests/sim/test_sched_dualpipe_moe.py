"""DualPipe and DualPipeV on a tiny MoE: one microbatch's expert-parallel all-to-alls hide behind the
other microbatch's compute in each overlapped forward&backward pair (DeepSeek-V3
section 3.2.1), checked by hand from the pair's kernels and transfers."""

import pytest

from sim.scenario import parse
from sim.setup import build_engine, resolve_setup
from tests.sim.test_moe_sim import TINY
from workloads import training
from workloads.graph import Block, Collective, Overlap

MODEL = {**TINY, "layers": 4}           # 2 layers per DualPipe stage (pp 2)
TOKENS, HIDDEN = 1024, 1024             # b s / tp tokens per rank, top-1


def scenario(schedule: str, nodes: int = 1, ep: int = 4) -> dict:
    model = {**MODEL, "moe": {**MODEL["moe"], "experts": ep}}
    return {"name": "tiny-moe-dualpipe", "cluster": {"system": "dgx-h100", "nodes": nodes},
            "workload": {"kind": "training", "model": model, "global_batch": 16 * nodes,
                         "micro_batch": 1,
                         "parallel": {"tp": 1, "pp": 2, "ep": ep, "schedule": schedule, "zero": 1},
                         "moe": {"overlap": False}, "overlap_grad_reduce": False},
            "sim": {"fidelity": "analytical", "host_launch": False}}   # the GPU's work only (host-bound)


def graph_and_costs(sc: dict):
    setup = resolve_setup(parse(sc))
    g = training.build(setup.model, setup.plan, setup.options)
    return g, build_engine(setup, g).costs


def a2a(ops) -> list[Collective]:
    return [o for o in ops if isinstance(o, Collective) and o.group.dim == "ep"]


def compute_time(costs, ops) -> float:
    return sum(costs.op_time(o) for o in ops if not (isinstance(o, Collective) and o.group.dim == "ep"))


@pytest.mark.parametrize("schedule,per_chunk", [("dualpipe", 2), ("dualpipev", 1)])
@pytest.mark.parametrize("nodes,ep", [(1, 4), (4, 16)])
def test_pair_hides_all_to_alls_by_hand(nodes, ep, schedule, per_chunk):
    """DualPipe: 2 of the 4 layers per chunk; DualPipeV: 1 (4 chunks on the V)."""
    g, costs = graph_and_costs(scenario(schedule, nodes, ep))
    fwd = next(n.op for n in g.nodes if n.name == "F0_c0" and n.rank == 0)
    pair = next(n for n in g.nodes if "+" in n.name and n.rank == 0)
    f_name, b_name = pair.name.split("+")
    bwd = next(n.op for n in g.nodes if n.rank == 0 and n.name.startswith(b_name[0])
               and n.name.endswith(b_name.split("_")[1]) and "+" not in n.name)
    # By hand: per layer a dispatch and a combine in the forward and in the full
    # backward, each moving the rank's 1024 tokens x 1024 hidden x 2 bytes.
    fwd_a2a, bwd_a2a = a2a(fwd.ops), a2a(bwd.ops)
    assert len(fwd_a2a) == len(bwd_a2a) == 2 * per_chunk
    assert all(o.bytes == TOKENS * HIDDEN * 2.0 for o in fwd_a2a + bwd_a2a)
    (ov,) = pair.op.ops
    n = 4 * per_chunk
    assert isinstance(pair.op, Block) and isinstance(ov, Overlap) and ov.steps == n
    m = compute_time(costs, fwd.ops) + compute_time(costs, bwd.ops)
    h = sum(costs.op_time(o) for o in fwd_a2a + bwd_a2a)
    # The pair: the first 1/(n+1) of the compute alone, then n steps of the longer of a
    # compute share and one transfer; unpaired passes pay compute + transfers in series.
    expected = m / (n + 1) + n * max(m / (n + 1), h / n)
    assert costs.duration(pair) == pytest.approx(expected, rel=1e-9)
    assert costs.duration(pair) < m + h
    assert costs.op_time(fwd) == pytest.approx(compute_time(costs, fwd.ops)
                                               + sum(costs.op_time(o) for o in fwd_a2a))
    if nodes == 1:      # NVLink (~28 us per transfer, ~850 us compute): all hidden
        assert h / n < m / (n + 1) and costs.duration(pair) == pytest.approx(m)
    else:               # EP 16 over 2 nodes (~345 us per transfer): the network bounds it
        assert h / n > m / (n + 1) and costs.duration(pair) == pytest.approx(m / (n + 1) + h)


def test_dualpipe_exposes_less_ep_time_than_1f1b():
    """Same tiny MoE, same ranks: the exposed EP time of the critical rank falls when the
    pairs overlap (1F1B runs every all-to-all in series with its own compute)."""
    from sim.simulate import simulate
    one = simulate(parse(scenario("1f1b")), band=False)
    dual = simulate(parse(scenario("dualpipe")), band=False)
    assert dual.breakdown.get("ep", 0.0) < one.breakdown["ep"]
