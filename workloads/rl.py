"""One RL post-training step (GRPO, PPO, DAPO) as data: its passes, its sequences packed
into training rows, the weight reshard from the training to the rollout layout, and a
forward-only graph for the log-prob passes. Nothing here advances time (``sim.rl`` does).

The step, as veRL / NeMo RL / OpenRLHF run it:
1. rollout: the rollout engine (vLLM) generates ``samples_per_prompt`` responses for each
   of ``prompts_per_step`` prompts;
2. log-prob passes, forward only: the policy (old log-probs) and the frozen reference
   (KL penalty); PPO adds the critic (values) and the reward model (scores). DAPO drops
   the KL term (Yu et al. 2025, "DAPO", section 3), so it has no reference pass;
3. training: the policy (PPO: and the critic) over the samples in minibatches of
   ``train.global_batch`` samples, one optimizer step each;
4. weight sync: the new policy weights go from the training layout to the rollout layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from workloads import training
from workloads.graph import ExecutionGraph, SendRecv
from workloads.model import ModelSpec
from workloads.parallel import ParallelPlan
from workloads.training import TrainingOptions


@dataclass(frozen=True)
class Pass:
    """One pass over the step's sequences on the training GPUs."""
    name: str          # e.g. "policy_logprob"
    role: str          # policy | reference | critic | reward
    train: bool        # False: forward only (log-probs, values, scores)


PASSES: dict[str, tuple[Pass, ...]] = {
    "grpo": (Pass("policy_logprob", "policy", False), Pass("reference_logprob", "reference", False),
             Pass("policy_train", "policy", True)),
    "dapo": (Pass("policy_logprob", "policy", False), Pass("policy_train", "policy", True)),
    "ppo": (Pass("policy_logprob", "policy", False), Pass("reference_logprob", "reference", False),
            Pass("critic_values", "critic", False), Pass("reward_score", "reward", False),
            Pass("policy_train", "policy", True), Pass("critic_train", "critic", True)),
}


@dataclass(frozen=True)
class Layout:
    """How one copy of the model is split: tp x pp GPUs (ep rides inside tp x dp for MoE
    experts and is not part of the dense reshard)."""
    tp: int = 1
    pp: int = 1

    @property
    def gpus(self) -> int:
        return self.tp * self.pp


def pack_rows(lengths: np.ndarray, max_seq_len: int | None) -> tuple[int, int]:
    """(rows, row_len) of the training batch. With ``max_seq_len``: first-fit decreasing
    packing of the sequences into rows of that many tokens (NeMo RL's sequence packing,
    ``modified_first_fit_decreasing``); without: one row per sequence, padded to the longest."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if max_seq_len is None:
        return len(lengths), int(lengths.max())
    free: list[int] = []
    for n in sorted(lengths.tolist(), reverse=True):
        for i, room in enumerate(free):
            if room >= n:
                free[i] -= n
                break
        else:
            free.append(max_seq_len - n)
    return len(free), max_seq_len


def train_region(g: int, lay: Layout, dp: int) -> tuple[int, int]:
    """(pp stage, tp rank) of training GPU ``g`` (Megatron order: tp, then dp, then pp)."""
    return g // (lay.tp * dp), g % lay.tp


def rollout_region(g: int, lay: Layout) -> tuple[int, int]:
    """(pp stage, tp rank) of rollout GPU ``g`` (replicas of tp x pp, tp fastest)."""
    local = g % lay.gpus
    return local // lay.tp, local % lay.tp


def interval_overlap(a: int, n: int, b: int, m: int) -> float:
    """Length of [a/n, (a+1)/n) intersected with [b/m, (b+1)/m)."""
    return max(0.0, min((a + 1) / n, (b + 1) / m) - max(a / n, b / m))


def reshard_inbound(model_bytes: float, train: Layout, train_dp: int, rollout: Layout,
                    rollout_gpus: int, colocated: bool) -> np.ndarray:
    """Bytes each rollout GPU must receive over the fabric to hold its rollout shard.

    The weights are a unit square: layers along one side (split by pp), each layer's
    matrices along the other (split by tp, Megatron/vLLM column and row shards). A rollout
    GPU needs the rectangle of its (stage, tp rank), ``model_bytes / (tp_r pp_r)``; when
    colocated it already holds the part of it that its own training shard covers, and only
    the rest moves."""
    out = np.empty(rollout_gpus)
    need = model_bytes / rollout.gpus
    for g in range(rollout_gpus):
        if not colocated:
            out[g] = need
            continue
        rs, rt = rollout_region(g, rollout)
        ts, tt = train_region(g, train, train_dp)
        have = interval_overlap(rs, rollout.pp, ts, train.pp) * interval_overlap(rt, rollout.tp, tt, train.tp)
        out[g] = max(0.0, need - have * model_bytes)
    return out


def build_forward(model: ModelSpec, plan: ParallelPlan, opts: TrainingOptions) -> ExecutionGraph:
    """A forward-only pass over ``plan.global_batch`` rows: every microbatch runs the
    forward of each pipeline stage in turn (no backward, no gradient sync), as log-prob,
    value and reward passes do. The stage forwards are the training graph's own
    (training.stage_forward: the same kernels, MoE layers included); virtual stages are
    merged (a forward-only pass has no interleaving to gain). One representative rank per
    stage, as in training.build."""
    plan = replace(plan, vpp=1, schedule="1f1b")
    g = ExecutionGraph(plan.world, tuple(plan.rank(0, 0, s) for s in range(plan.pp)),
                       meta={"kind": "forward", "microbatches": plan.microbatches})
    nbytes = 2.0 * plan.micro_batch * model.seq_len * model.residual_width / plan.tp
    for s in range(plan.pp):
        block, rank = training.stage_forward(model, plan, opts, s), plan.rank(0, 0, s)
        for mb in range(plan.microbatches):
            deps = []
            if s > 0:
                recv = SendRecv("recv", plan.rank(0, 0, s - 1), nbytes, mb * plan.pp + s)
                deps.append(g.add(rank, "recv_fwd", recv, (), "pp", f"recv_F{mb}"))
            node = g.add(rank, "compute", block, deps, "compute", f"F{mb}", mb=mb)
            if s < plan.pp - 1:
                send = SendRecv("send", plan.rank(0, 0, s + 1), nbytes, mb * plan.pp + s + 1)
                g.add(rank, "send_fwd", send, (node,), "pp", f"send_F{mb}")
    return g


def minibatches(samples: int, global_batch: int) -> list[int]:
    """Sample counts of the optimizer steps over one pass of the step's samples."""
    full, rest = divmod(samples, global_batch)
    return [global_batch] * full + ([rest] if rest else [])


def round_up(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)
