"""RL training-side options as NeMo RL's recipes set them: the MoE dispatcher of the
log-prob and training passes (train.moe), packed rows per log-prob microbatch
(train.logprob_micro_batch), activation recomputation; hand calculations on tiny cases."""

import sys

import pytest
import yaml

from hw_models import catalog
from sim import scenario
from sim.rl import pool_sizes, train_scenario
from sim.setup import resolve_setup
from workloads import rl as steps
from workloads import training
from workloads.graph import Collective, Compute, leaf_ops

H, LAYERS, FFN, VOCAB, SEQ = 1024, 2, 4096, 1024, 1024
DENSE = {"layers": LAYERS, "hidden": H, "heads": 8, "vocab": VOCAB, "seq_len": SEQ, "ffn_hidden": FFN,
         "activation": "swiglu", "norm": "rmsnorm", "bias": False, "rope": True,
         "tied_embeddings": False}
MOE = {**DENSE, "moe": {"experts": 4, "top_k": 1, "expert_ffn_hidden": FFN}}


def make(model: dict, samples: int = 8, **train) -> scenario.Scenario:
    """One DGX H100, colocated; 4-token prompts + 252-token responses packed four to a
    1024-token row: ``samples / 4`` rows."""
    return scenario.parse({"name": "rl-recipe", "cluster": {"system": "dgx-h100", "nodes": 1},
                           "workload": {"kind": "rl", "model": model, "prompts_per_step": samples // 4,
                                        "samples_per_prompt": 4, "prompt_len": 4, "response_len": 252,
                                        "train": {"global_batch": samples, "max_seq_len": SEQ, **train}}})


def graphs(sc: scenario.Scenario, rows: int):
    """(training graph, forward-only graph) of the step's passes over ``rows`` packed rows."""
    system = catalog.system("dgx-h100")
    pools = pool_sizes(sc.workload, 8, 8)
    model = sc.workload.model
    tr = resolve_setup(train_scenario(sc, system, pools, model, SEQ, rows))
    fw = resolve_setup(train_scenario(sc, system, pools, model, SEQ, rows, forward=True))
    return (training.build(tr.model, tr.plan, tr.options), tr.plan,
            steps.build_forward(fw.model, fw.plan, fw.options), fw.plan)


def ops_of(g, rank: int = 0):
    for n in g.nodes:
        if n.rank == rank:
            yield from leaf_ops(n.op)


def gemm_flops(g) -> float:
    return sum(o.flops for o in ops_of(g) if isinstance(o, Compute) and o.op_class == "gemm")


def test_full_recompute_adds_one_forward_of_the_layers_by_hand():
    # Per token, the layers' GEMMs are 2 x (h x 3h for QKV + h x h out + 3 h ffn gated MLP)
    # = 2 x 16 h^2 each, and the head 2 h V. One 1024-token row per rank (8 rows, dp 8).
    layer = 2 * LAYERS * (3 * H * H + H * H + 3 * H * FFN) * SEQ
    head = 2 * H * VOCAB * SEQ
    none_train, _, fwd, _ = graphs(make(DENSE, 32, recompute="none"), 8)
    full_train, _, fwd_full, _ = graphs(make(DENSE, 32, recompute="full"), 8)
    # The log-prob pass is forward only: layers + head, whatever the recompute setting.
    assert gemm_flops(fwd) == pytest.approx(layer + head, rel=1e-12)
    assert gemm_flops(fwd_full) == gemm_flops(fwd)
    # Training without recompute: forward + backward (dgrad + wgrad) = 3 x the forward.
    assert gemm_flops(none_train) == pytest.approx(3 * (layer + head), rel=1e-12)
    # Full recompute runs each layer's forward again in the backward; the head is not
    # recomputed: train / log-prob = 3 + layer / (layer + head).
    assert gemm_flops(full_train) - gemm_flops(none_train) == pytest.approx(layer, rel=1e-12)


def test_logprob_microbatches_hold_logprob_micro_batch_rows():
    # 64 samples -> 16 rows over dp 8: 2 rows per rank. Training microbatches hold one row
    # (train micro batch 1), log-prob microbatches two (NeMo RL logprob_batch_size 2).
    _, tplan, _, fplan = graphs(make(DENSE, 64, logprob_micro_batch=2), 16)
    assert (tplan.micro_batch, tplan.microbatches) == (1, 2)
    assert (fplan.micro_batch, fplan.microbatches) == (2, 1)
    # A rank with fewer rows than logprob_micro_batch runs them as one microbatch (no
    # padding rows): 8 rows over dp 8 with logprob_micro_batch 4.
    _, _, _, small = graphs(make(DENSE, 32, logprob_micro_batch=4), 8)
    assert (small.micro_batch, small.global_batch) == (1, 8)


def test_allgather_dispatcher_bytes_per_rank_by_hand():
    # EP 4 on 8 GPUs (tp 1): each rank's microbatch has n = rows x 1024 tokens; Megatron's
    # AllGather dispatcher gathers the EP group's tokens (e n h ep bytes, bf16 e = 2) and
    # reduce-scatters the outputs, per MoE layer. Training: 1 row; log-prob: 2 rows.
    sc = make(MOE, 64, logprob_micro_batch=2, parallel={"ep": 4},
              moe={"dispatcher": "allgather"})
    train_g, tplan, fwd_g, fplan = graphs(sc, 16)      # 2 rows per rank
    for g, rows, mbs in ((train_g, 1, tplan.microbatches), (fwd_g, 2, fplan.microbatches)):
        assert rows * mbs == 2
        ep = [o for o in ops_of(g) if isinstance(o, Collective) and o.group.dim == "ep"]
        fwd = [o for o in ep if o.name in ("ep_all_gather_dispatch", "ep_reduce_scatter_combine")]
        assert len(fwd) == 2 * LAYERS * mbs
        assert {o.bytes for o in fwd} == {2 * rows * SEQ * H * 4}
        assert {o.group.size for o in fwd} == {4}
    # The default (alltoall) sends each routed copy once: e n k h = 2 x 1024 x 1 x 1024.
    a2a_g, _, _, _ = graphs(make(MOE, 64, parallel={"ep": 4}), 16)
    a2a = [o for o in ops_of(a2a_g) if isinstance(o, Collective) and o.name == "ep_all_to_all_dispatch"]
    assert a2a and {o.bytes for o in a2a} == {2 * SEQ * H}


@pytest.mark.parametrize("override,words", [
    ("workload.train.moe.dispatcher=ring", "dispatcher"),
    ("workload.train.moe.capacity_factor=0", "capacity_factor"),
    ("workload.train.logprob_micro_batch=0", "logprob_micro_batch"),
    ("workload.train.grad_reduce_bytes=3", "grad_reduce_bytes"),
])
def test_bad_train_options_exit_2_with_one_line(tmp_path, monkeypatch, capsys, override, words):
    _cli_error(tmp_path, monkeypatch, capsys, make(MOE, 8, parallel={"ep": 4}), override, words)


def test_train_moe_on_a_dense_policy_exits_2(tmp_path, monkeypatch, capsys):
    _cli_error(tmp_path, monkeypatch, capsys, make(DENSE, 8),
               "workload.train.moe.dispatcher=allgather", "train.moe: the policy is a dense model")


def _cli_error(tmp_path, monkeypatch, capsys, sc, override, words):
    from sim.cli.main import main
    path = tmp_path / "rl.yaml"
    path.write_text(yaml.safe_dump(sc.model_dump(mode="json")))
    monkeypatch.setattr(sys, "argv", ["clustersim", "simulate", str(path), "--set", override])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and words in err and len(err.splitlines()) == 1, err


def test_ddp_and_sequence_parallel_options_reach_the_training_pass():
    # NeMo RL's grpo_math_1B.yaml: grad_reduce_in_fp32 false (2-byte gradient reduction,
    # bf16 training defaults to Megatron's 4), overlap_param_gather true; sequence_parallel.
    system, plain = catalog.system("dgx-h100"), make(DENSE, 32, parallel={"tp": 2})
    recipe = make(DENSE, 32, parallel={"tp": 2, "sequence_parallel": True},
                  overlap_param_gather=True, grad_reduce_bytes=2)
    got = []
    for sc in (plain, recipe):
        setup = resolve_setup(train_scenario(sc, system, pool_sizes(sc.workload, 8, 8), DENSE, SEQ, 8))
        got.append((setup.options.grad_bytes, setup.options.overlap_param_gather,
                    setup.plan.sequence_parallel))
    assert got == [(4, False, False), (2, True, True)]
