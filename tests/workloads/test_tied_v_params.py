"""Tied input/output embeddings on V-shaped pipelines (zb-v, DualPipeV): rank 0 holds the
first virtual stage (word embedding) and the last (output layer), so it holds the shared
table once, as a rank without a pipeline does, and no tied-embedding gradient sync runs.

Tiny dense model: 4 layers, hidden 256 (8 heads), vocab 1000, rope, no biases, RMSNorm,
GELU MLP of 1024. Per layer L = attention 4 x 256^2 + MLP 2 x 256 x 1024 + 2 norms x 256
= 262,144 + 524,288 + 512 = 786,944; table V = 1000 x 256 = 256,000. pp 2, tp 1:
zb-v / DualPipeV rank 0 holds layers 0 and 3 with the one table (2L + V), rank 1 layers
1 and 2 (2L); 1F1B holds a table on each end rank (Megatron's copy of the tied table on
the last stage, kept equal by the embedding-gradient all-reduce); DualPipe holds both
directions' stages on each rank: 4L + 2V (two parameter copies)."""

from __future__ import annotations

import pytest

from sim.scenario import parse
from sim.setup import resolve_setup
from workloads import moe_training, training
from workloads.graph import Collective
from workloads.memory import stage_memory
from workloads.model import ModelSpec
from workloads.parallel import ParallelPlan
from workloads.param_sync import stage_params

L, V = 786_944, 256_000
DENSE = ModelSpec(layers=4, hidden=256, heads=8, vocab=1000, seq_len=128, rope=True,
                  bias=False, norm="rmsnorm")

# schedule -> (rank 0, rank 1) parameters, tied embeddings
TIED = {"zb-v": (2 * L + V, 2 * L), "dualpipev": (2 * L + V, 2 * L),
        "1f1b": (2 * L + V, 2 * L + V), "dualpipe": (4 * L + 2 * V, 4 * L + 2 * V)}


def plan(schedule: str, dp: int = 1) -> ParallelPlan:
    return ParallelPlan(tp=1, pp=2, dp=dp, micro_batch=1, global_batch=8 * dp,
                        schedule=schedule)


def test_layer_count_by_hand():
    assert DENSE.params_per_layer == L and DENSE.vocab * DENSE.hidden == V


@pytest.mark.parametrize("schedule", list(TIED))
def test_rank_parameters_by_hand(schedule):
    got = tuple(stage_params(DENSE, plan(schedule), s) for s in range(2))
    assert got == TIED[schedule]


@pytest.mark.parametrize("schedule", ["zb-v", "dualpipev"])
def test_untied_v_holds_both_tables(schedule):
    untied = DENSE.model_copy(update={"tied_embeddings": False})
    assert stage_params(untied, plan(schedule), 0) == 2 * L + 2 * V


@pytest.mark.parametrize("schedule", list(TIED))
def test_model_state_memory_by_hand(schedule):
    """16-bit weights, fp32 gradients, 12 B of master weights and Adam moments (dp 1)."""
    for s in range(2):
        m = stage_memory(DENSE, plan(schedule), s, grad_bytes=4, flash=True)
        n = TIED[schedule][s]
        assert (m.weights, m.grads, m.optimizer) == pytest.approx((2 * n, 4 * n, 12 * n),
                                                                  rel=1e-12)


@pytest.mark.parametrize("schedule", list(TIED))
def test_graph_syncs_only_tables_on_two_ranks(schedule):
    """dp 2, ZeRO 0: each rank all-reduces its gradients (4 B a parameter) over dp; the
    tied table's gradient (4 B x V) is all-reduced between the end ranks only where they
    are two ranks (1F1B; DualPipe, whose end ranks hold two tables: the embedding of one
    direction and the output layer of the other), not under a V."""
    p = plan(schedule, dp=2)
    g = training.build(DENSE, p, training.TrainingOptions())
    for s in range(2):
        ops = [n.op for n in g.nodes if n.rank == p.rank(0, 0, s)
               and isinstance(n.op, Collective)]
        dp = sum(o.bytes for o in ops if o.name == "grad_all_reduce")
        tied = [o.bytes for o in ops if o.name == "embedding_grad_sync"]
        assert dp == pytest.approx(4 * TIED[schedule][s], rel=1e-12)
        assert tied == {"zb-v": [], "dualpipev": [], "1f1b": [4 * V], "dualpipe": [8 * V]}[schedule]


@pytest.mark.parametrize("schedule", list(TIED))
def test_head_accumulates_its_own_table_only_on_another_rank(schedule):
    """Without gradient-accumulation fusion each microbatch adds the table's gradient to
    the accumulated one (read both, write the sum: 2 x 4 B + 2 B = 10 B a parameter) once
    per table: after the embedding's backward, and after the output layer's only where it
    holds its own copy (1F1B, DualPipe), not under a V (rank 0's one table)."""
    opts = training.TrainingOptions(grad_accumulation_fusion=False)
    _, ops = training.stage_layer_ops(DENSE, plan(schedule), opts, 0)

    def added(seq) -> float:
        return sum(o.bytes for o in seq if getattr(o, "name", "") == "accumulate_wgrad")

    assert added(ops.emb_bwd) == pytest.approx(10 * V, rel=1e-12)
    two_tables = schedule in ("1f1b", "dualpipe")
    assert added(ops.head_bwd) == pytest.approx(10 * V if two_tables else 0.0, rel=1e-12)


# -- MoE models: the replicated part (workloads/moe_training.py) --------------------------
R = 4_200_448              # per layer: attention 4 x 1024^2 + 2 norms x 1024 + router 1024 x 4
T = 1_048_576              # table: 1024 x 1024
MOE = {"layers": 4, "hidden": 1024, "heads": 8, "vocab": 1024, "seq_len": 1024,
       "activation": "swiglu", "norm": "rmsnorm", "bias": False, "rope": True,
       "tied_embeddings": True, "moe": {"experts": 4, "top_k": 1, "expert_ffn_hidden": 4096}}
MOE_TIED = {"zb-v": (2 * R + T, 2 * R), "dualpipev": (2 * R + T, 2 * R),
            "1f1b": (2 * R + T, 2 * R + T), "dualpipe": (4 * R + 2 * T, 4 * R + 2 * T)}


@pytest.mark.parametrize("schedule", list(MOE_TIED))
def test_moe_replicated_parameters_by_hand(schedule):
    sc = parse({"cluster": {"system": "dgx-h100", "nodes": 1},
                "workload": {"kind": "training", "model": MOE, "global_batch": 16,
                             "micro_batch": 1,
                             "parallel": {"tp": 1, "pp": 2, "ep": 2, "zero": 1,
                                          "schedule": schedule}},
                "sim": {"fidelity": "analytical", "check_memory": False}})
    st = resolve_setup(sc)
    for s in range(2):
        assert moe_training.stage_split(st.model, st.plan, s)[0] == MOE_TIED[schedule][s]
        assert stage_params(st.model, st.plan, s) == MOE_TIED[schedule][s]


# -- DualPipe: the two parameter copies' gradients summed ---------------------------------
def _copy_syncs(g, rank: int) -> list:
    return [n.op for n in g.nodes if n.rank == rank and isinstance(n.op, Collective)
            and n.op.name == "copy_grad_sync"]


@pytest.mark.parametrize("p", [2, 4])
def test_dualpipe_sums_the_copies_with_the_mirror_rank(p):
    """deepseek-ai/DualPipe examples/example_dualpipe.py adds each rank's gradients to its
    mirror's (rank p - 1 - r holds the other copy of the same two stages): one all-reduce
    of the rank's whole gradient (4 B a parameter, dp 1) between the two; none under the
    other schedules. pp 2: 4L + 2V a rank; pp 4: rank 0 and 3 hold layers 0 and 3 of 4
    with both tables (2 x (L + V)), ranks 1 and 2 layers 1 and 2 (2L)."""
    dp = ParallelPlan(tp=1, pp=p, dp=1, micro_batch=1, global_batch=8, schedule="dualpipe")
    g = training.build(DENSE, dp, training.TrainingOptions())
    held = {2: [4 * L + 2 * V] * 2, 4: [2 * (L + V), 2 * L, 2 * L, 2 * (L + V)]}[p]
    for s in range(p):
        (op,) = _copy_syncs(g, dp.rank(0, 0, s))
        assert op.kind == "all_reduce" and op.bytes == pytest.approx(4 * held[s], rel=1e-12)
        assert op.group.ranks == tuple(sorted((dp.rank(0, 0, s), dp.rank(0, 0, p - 1 - s))))
    for schedule in ("1f1b", "zb-v", "dualpipev")[:3 if p == 2 else 1]:   # V: 2p <= 4 layers
        other = ParallelPlan(tp=1, pp=p, dp=1, micro_batch=1, global_batch=8, schedule=schedule)
        g = training.build(DENSE, other, training.TrainingOptions())
        assert not any(_copy_syncs(g, other.rank(0, 0, s)) for s in range(p))


def test_dualpipe_moe_sums_the_optimizer_shard():
    """Tiny MoE (untied, test_moe_chunk_params.py), tp 1, pp 2, dp 4, ep 2 (expert-DP 2),
    ZeRO-1: after the data-parallel reduce-scatters each rank sums with its mirror the
    shard its optimizer steps on: replicated (4R + 2T) / 4 and experts 4E / 2, at 4 B."""
    e = 25_165_824
    sc = parse({"cluster": {"system": "dgx-h100", "nodes": 1},
                "workload": {"kind": "training", "model": {**MOE, "tied_embeddings": False},
                             "global_batch": 16, "micro_batch": 1,
                             "parallel": {"tp": 1, "pp": 2, "ep": 2, "zero": 1,
                                          "schedule": "dualpipe"}},
                "sim": {"fidelity": "analytical", "check_memory": False}})
    st = resolve_setup(sc)
    g = training.build(st.model, st.plan, st.options)
    for s in range(2):
        (op,) = _copy_syncs(g, st.plan.rank(0, 0, s))
        want = 4 * ((4 * R + 2 * T) / 4 + 4 * e / 2)
        assert op.bytes == pytest.approx(want, rel=1e-12)
