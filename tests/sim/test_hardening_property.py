"""Property: any scenario, valid or not, ends in a result or one ClusterSimError; never a
traceback, never a hang (each example runs under a time limit), never a NaN in the result.

Valid scenarios are drawn from the schema's ranges (small models and clusters, so that
an example simulates in well under a second); invalid ones are valid ones with one field
replaced by a hostile value (NaN, infinities, negatives, 10^12, wrong types), an unknown
key, or a non-mapping."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw_models import catalog
from hw_models.errors import ClusterSimError
from sim import scenario as scenario_mod
from sim.reliability import run_summary
from sim.simulate import simulate
from tests.sim.hardening_helpers import time_limit

LIMIT_S = 60          # far above any bounded run: past it, something spins
MODELS = ["megatron-1.7b", "megatron-7.5b", "llama3-8b", "gptj-6b", "llama2-7b"]
HOSTILE = [math.nan, math.inf, -math.inf, -1, 0, 10**12, 1e300, -1e-300, "x", None, [], {}, True,
           "nan", ".inf", 2**63]

@st.composite
def training(draw):
    """A training scenario that satisfies the plan's divisibility rules, so that most draws
    simulate (about one in four still stops on memory, a dtype or a schedule rule)."""
    from workloads.model import resolve
    system = draw(st.sampled_from(sorted(catalog.systems())))
    spec = catalog.system(system)
    nodes = draw(st.integers(1, 4))
    world = nodes * spec.gpus_per_node
    model = draw(st.sampled_from(MODELS))
    layers, heads = resolve(model).layers, resolve(model).heads
    tp = draw(st.sampled_from([d for d in (1, 2, 4, 8, 16) if world % d == 0 and heads % d == 0]))
    pp = draw(st.sampled_from([d for d in (1, 2, 4) if (world // tp) % d == 0 and layers % d == 0]))
    vpp = draw(st.sampled_from([v for v in (1, 2, 3) if layers % (pp * v) == 0 and (v == 1 or pp > 1)]))
    dp, mb = world // (tp * pp), draw(st.sampled_from([1, 2, 4]))
    batch = dp * mb * pp * draw(st.integers(1, 4))
    dtypes = sorted(set(spec.gpu_spec.peak_tflops) & {"bf16", "fp16", "fp8"})
    return {
        "cluster": {"system": system, "nodes": nodes, "network": {
            "topology": draw(st.sampled_from(["rail-optimized", "fat-tree"])),
            "oversubscription": draw(st.floats(1, 8)),
            "nic_gbps": draw(st.none() | st.floats(1, 3200))}},
        "workload": {"kind": "training", "model": model, "global_batch": batch,
                     "micro_batch": mb, "precision": draw(st.sampled_from(dtypes)),
                     "recompute": draw(st.sampled_from(["none", "selective", "full"])),
                     "attention": draw(st.sampled_from(["flash", "unfused"])),
                     "parallel": {"tp": tp, "pp": pp, "vpp": vpp,
                                  "schedule": "interleaved" if vpp > 1 else
                                  draw(st.sampled_from(["gpipe", "1f1b"])),
                                  "zero": draw(st.integers(0, 3 if pp == 1 else 2)),
                                  "sequence_parallel": draw(st.booleans()) and tp > 1}},
        "sim": {"fidelity": draw(st.sampled_from(["analytical", "analytical", "flow"])),
                "check_memory": draw(st.booleans()), "speed_scale": draw(st.floats(0.1, 10))},
    }


run_block = st.fixed_dictionaries({
    "steps": st.integers(1, 20_000),
    "failures": st.fixed_dictionaries({"gpu": st.floats(0, 1e5), "software": st.floats(0, 100)}),
    "restart_s": st.floats(0, 1e4), "samples": st.integers(1, 3), "seed": st.integers(0, 9)})
valid = st.tuples(training(), st.none() | run_block).map(
    lambda t: {**t[0], **({"run": t[1]} if t[1] else {})})


def leaves(d, path=()):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from leaves(v, (*path, k))
        else:
            yield (*path, k)


@st.composite
def invalid(draw):
    data = copy.deepcopy(draw(valid))
    how = draw(st.sampled_from(["value", "value", "value", "key", "shape"]))
    if how == "shape":
        return draw(st.sampled_from([None, [], "scenario", 42, [data]]))
    path = draw(st.sampled_from(sorted(leaves(data))))
    node = data
    for k in path[:-1]:
        node = node[k]
    if how == "key":
        node[path[-1] + "_typo"] = 1
    else:
        node[path[-1]] = draw(st.sampled_from(HOSTILE))
    return data


def no_nan(x) -> None:
    """The raw result must hold no NaN (the JSON writer would turn it into null)."""
    json.dumps(x, allow_nan=False, default=lambda o: o.item() if hasattr(o, "item") else str(o))


def play(data) -> None:
    with time_limit(LIMIT_S), np.errstate(all="ignore"):
        try:
            sc = scenario_mod.parse(data, "property")
            res = simulate(sc)
            out = res.summary()
            if sc.run is not None:
                out["run"] = run_summary(sc, res.iteration_time_s,
                                         res.extra.get("checkpoint_contention"))
        except ClusterSimError as exc:
            assert str(exc) and "\n" not in str(exc)
            return
    no_nan(out)


SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.slow       # ~45 s: every example is a whole simulation; CI runs it
@SETTINGS
@given(valid)
def test_valid_scenarios_give_a_result_or_one_error(data):
    play(data)


@settings(SETTINGS, max_examples=60)
@given(invalid())
def test_invalid_scenarios_give_one_error(data):
    play(data)
