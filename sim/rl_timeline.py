"""The RL step's phases laid out in time per GPU pool, and the step's result.

Given each phase's duration (``sim.rl`` measures them on the serving and training
simulators), this places them on the pools:

- colocated (one pool, time-shared): generation, onload of the training states, the
  log-prob passes, the training passes, offload of the training states, weight sync, one
  after another;
- separate pools, on-policy (``off_policy_steps: 0``): the training pool waits for the
  rollouts, the rollout pool waits for training; both join the weight sync;
- separate pools, ``off_policy_steps: k >= 1``: rollout of step i+k runs while step i
  trains, so in steady state the step takes max(generation, log-prob + training) plus the
  sync, which stops both pools (the trainer sends, the engines receive). ``generation`` is
  what sim.rl measured: one step to its last response for k = 1, the steady-state time per
  step of rollouts streamed across steps for k >= 2 (sim.rl_async).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd



@dataclass(frozen=True)
class Phases:
    """Seconds of each phase of one step; ``passes`` in execution order."""
    generation: float
    passes: tuple[tuple[str, float], ...]     # (name, seconds): log-prob then training passes
    weight_sync: float
    onload: float = 0.0
    offload: float = 0.0

    @property
    def logprob(self) -> float:
        return sum(t for n, t in self.passes if not n.endswith("_train"))

    @property
    def train(self) -> float:
        return sum(t for n, t in self.passes if n.endswith("_train"))


@dataclass(frozen=True)
class PoolSizes:
    rollout: int
    train: int
    colocated: bool

    @property
    def world(self) -> int:
        return self.rollout if self.colocated else self.rollout + self.train


def _seq(rows: list, pool: str, gpus: int, t: float, items) -> float:
    for name, dur in items:
        if dur > 0:
            rows.append((pool, name, t, t + dur, gpus))
        t += dur
    return t


def layout(ph: Phases, pools: PoolSizes, off_policy: int) -> tuple[pd.DataFrame, float]:
    """(timeline rows: pool, phase, start_s, end_s, gpus; step time)."""
    import pandas as pd
    rows: list = []
    if pools.colocated:
        items = [("generation", ph.generation), ("onload", ph.onload), *ph.passes,
                 ("offload", ph.offload), ("weight_sync", ph.weight_sync)]
        step = _seq(rows, "all", pools.rollout, 0.0, items)
    else:
        work = ph.logprob + ph.train
        if off_policy == 0:
            start_train, sync_at = ph.generation, ph.generation + work
        else:
            start_train, sync_at = 0.0, max(ph.generation, work)
        _seq(rows, "rollout", pools.rollout, 0.0, [("generation", ph.generation)])
        _seq(rows, "train", pools.train, start_train, ph.passes)
        for pool, gpus in (("rollout", pools.rollout), ("train", pools.train)):
            _seq(rows, pool, gpus, sync_at, [("weight_sync", ph.weight_sync)])
        step = sync_at + ph.weight_sync
    df = pd.DataFrame(rows, columns=["pool", "phase", "start_s", "end_s", "gpus"])
    return df, step


def idle_gpu_seconds(timeline: pd.DataFrame, pools: PoolSizes, step: float) -> float:
    """GPU-seconds of the step in which a pool has no phase running (waiting for the other
    pool); stragglers inside generation are added by the caller."""
    busy = (timeline.end_s - timeline.start_s) * timeline.gpus
    return max(0.0, pools.world * step - float(busy.sum()))


@dataclass
class RLResult:
    name: str
    metrics: dict[str, Any]
    timeline: pd.DataFrame                  # pool, phase, start_s, end_s, gpus
    world_size: int
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def step_time_s(self) -> float:
        return self.metrics["step_time_s"]

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "rl", **self.metrics, "world_size": self.world_size,
                "timeline": self.timeline.to_dict("records"), **self.extra}

    def to_chrome_trace(self, path: str | Path | None = None) -> dict[str, Any]:
        """pid = GPU pool, tid 0; one "X" event per phase (us)."""
        pools = list(dict.fromkeys(self.timeline.pool))
        events = [{"name": r.phase, "cat": "rl", "ph": "X", "pid": pools.index(r.pool), "tid": 0,
                   "ts": r.start_s * 1e6, "dur": (r.end_s - r.start_s) * 1e6,
                   "args": {"gpus": int(r.gpus)}} for r in self.timeline.itertuples()]
        events += [{"name": "process_name", "ph": "M", "pid": i, "args": {"name": f"{p} pool"}}
                   for i, p in enumerate(pools)]
        trace = {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"scenario": self.name}}
        if path is not None:
            Path(path).write_text(json.dumps(trace))
        return trace
