"""TorchTitan's all-gather CP at a fixed 32K local tokens per GPU (Llama 3.1 8B on one
Grand Teton host): a CP row's step is the CP 1 row's plus cp - 1 load-balanced
non-causal steps of equal work, so the simulated cost per extra step is the same at
CP 4 and CP 8 (docs/long_context.md compares it with the published rows)."""

import pytest
import yaml

from sim.scenario import Scenario
from sim.simulate import simulate

EXAMPLE = "examples/torchtitan_llama3_8b_256k_cp8.yaml"


def step_time(cp: int) -> float:
    with open(EXAMPLE) as f:
        d = yaml.safe_load(f)
    d["workload"]["seq_len"] = 32768 * cp
    d["workload"]["parallel"]["cp"] = cp
    d["workload"]["global_batch"] = 8 // cp
    return simulate(Scenario.model_validate(d), band=False).iteration_time_s


def test_cost_per_cp_step_does_not_depend_on_cp():
    t1, t4, t8 = step_time(1), step_time(4), step_time(8)
    x4, x8 = (t4 - t1) / 3, (t8 - t1) / 7
    assert x8 == pytest.approx(x4, rel=0.03)
    # a step is attention only (no GEMMs): less than the whole CP 1 step, and more than
    # half of it, as attention is most of a step at 32K tokens
    assert 0.5 * t1 < x8 < t1


def test_cp_compiled_needs_the_all_gather_kind():
    """cp_compiled describes PyTorch's context_parallel traced by torch.compile; the other
    kinds are not PyTorch's loop."""
    from hw_models.errors import ClusterSimError
    with open(EXAMPLE) as f:
        d = yaml.safe_load(f)
    d["workload"]["parallel"]["cp_kind"] = "ring"
    with pytest.raises(ClusterSimError, match="cp_compiled"):
        simulate(Scenario.model_validate(d), band=False)


def test_compiled_cp_exposes_its_collectives():
    """Traced, the K,V all-gathers and the dK,dV sends are no longer hidden: the step's
    exposed CP time is, per layer, the all-gather three times (forward, recompute,
    backward) plus the backward's sends, each at its own collective time; eager, the
    same collectives hide behind the block kernels but for the SMs their CTAs take."""
    from sim.setup import build_engine, resolve_setup
    from workloads import training
    from workloads.graph import Collective
    with open(EXAMPLE) as f:
        d = yaml.safe_load(f)
    traced = simulate(Scenario.model_validate(d), band=False)
    st = resolve_setup(Scenario.model_validate(d))
    graph = training.build(st.model, st.plan, st.options)
    costs = build_engine(st, graph, st.profile).costs
    bwd = next(n for n in graph.nodes if n.name.startswith("B0")).op.ops
    t = {o.name: costs.op_time(o) for o in bwd if isinstance(o, Collective)}
    per_layer = 3 * t["cp_kv_all_gather"] + t["cp_dkv_ring"] + t["cp_dkv_last"]
    assert traced.breakdown["cp"] == pytest.approx(32 * per_layer, rel=0.01)
    d["workload"]["parallel"]["cp_compiled"] = False
    eager = simulate(Scenario.model_validate(d), band=False)
    # eager, the block kernels beside them lose the SMs of NCCL's 24 CTAs (CP 8 on one
    # H100 node) of 132 while they run: at least that share of their time
    assert 24 / 132 * traced.breakdown["cp"] <= eager.breakdown["cp"] \
        < 0.25 * traced.breakdown["cp"]
