"""The RL step as data: weight reshard bytes, sequence packing, minibatches, passes."""

import numpy as np
import pytest

from workloads import rl


def test_tp4_to_tp2_colocated_reshard_bytes_by_hand():
    # 4 GPUs, training TP4 (one copy), rollout TP2 (two replicas), model of 1000 bytes.
    # Rollout GPU 0 (replica 0, tp 0) needs columns [0, 1/2) = 500 B and holds training
    # shard [0, 1/4): 250 B move. GPU 1 needs [1/2, 1), holds [1/4, 1/2): all 500 move.
    # GPU 2 (replica 1, tp 0) needs [0, 1/2), holds [1/2, 3/4): 500. GPU 3 needs
    # [1/2, 1), holds [3/4, 1): 250.
    got = rl.reshard_inbound(1000.0, rl.Layout(tp=4), 1, rl.Layout(tp=2), 4, colocated=True)
    assert got.tolist() == pytest.approx([250, 500, 500, 250])


def test_separate_pools_receive_their_whole_shard():
    got = rl.reshard_inbound(1000.0, rl.Layout(tp=4), 1, rl.Layout(tp=2), 6, colocated=False)
    assert got.tolist() == pytest.approx([500] * 6)


def test_same_shapes_but_rank_orders_differ():
    # TP2 x PP2 training with dp 2 on 8 GPUs; rollout TP2 x PP2 replicas. Megatron puts
    # GPU g at stage g // 4, tp g % 2; vLLM replica-major at stage (g % 4) // 2: GPUs 2, 3
    # (dp copy 1 of stage 0 in training) hold stage 1 in rollout, so they receive it all.
    got = rl.reshard_inbound(800.0, rl.Layout(2, 2), 2, rl.Layout(2, 2), 8, colocated=True)
    assert got.tolist() == pytest.approx([0, 0, 200, 200, 200, 200, 0, 0])


def test_first_fit_decreasing_packing_by_hand():
    # 3000 -> row A (1096 left); 2000 -> row B (2096); 1500 -> B (596); 1000 -> A (96);
    # 500 -> B (96): two rows of 4096.
    assert rl.pack_rows(np.array([1000, 3000, 500, 2000, 1500]), 4096) == (2, 4096)
    assert rl.pack_rows(np.array([1000, 3000, 500]), None) == (3, 3000)


def test_minibatches_and_passes():
    assert rl.minibatches(2048, 512) == [512] * 4
    assert rl.minibatches(100, 64) == [64, 36]
    names = {a: [p.name for p in ps] for a, ps in rl.PASSES.items()}
    assert "reference_logprob" not in names["dapo"]          # DAPO drops the KL term
    assert {"critic_values", "reward_score", "critic_train"} <= set(names["ppo"])
