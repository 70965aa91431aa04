"""Failures, stragglers and checkpoints over a whole training run -> goodput.

A seeded SimPy process plays the run one *checkpoint segment* at a time, not one step at
a time: between two events (segment end, checkpoint, failure) nothing else happens, so a
segment of k steps is one timeout of k T plus the straggler delay, whose number of gated
steps is drawn exactly as Binomial(k, q) (q = 1 - (1 - fraction)^nodes: a synchronous step
waits for its slowest node). A second process draws failures as a Poisson process (sum of
the per-component rates) and interrupts the trainer, which rolls back to the last
*committed* checkpoint, pays detection/restart + checkpoint load (+ node replacement when
no hot spare is free) and carries on. Failures can strike during recovery too.

Closed form it must meet (Daly 2006, "A higher order estimate of the optimum checkpoint
interval", exponential failures, recovery R subject to failures, work tau per segment,
checkpoint C, MTBF M): expected wall per segment = M e^(R/M) (e^((tau+C)/M) - 1), and
Young's (1974) optimum tau ~ sqrt(2 C M).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import simpy

from hw_models.errors import ClusterSimError
from sim.progress import progress
from sim.run_bounds import (
    MAX_EVENTS,
    SEARCH_EVENTS,
    EventBudget,
    feasible,
    require_feasible,
    require_samples_fit,
    within_budget,
)
from sim.run_config import HARDWARE
from sim.stragglers import SlowNodes, SlowSchedule

DAY = 86400.0
HARD_EVENT_LIMIT = 5 * MAX_EVENTS   # safety net behind the estimate of sim/run_bounds.py


@dataclass(frozen=True)
class RunModel:
    """Everything in seconds; ``rates`` are failures per second of the whole job."""
    step_s: float                 # useful step (what the simulator computed)
    total_steps: int
    every_steps: int
    ckpt_block_s: float           # training stops this long per checkpoint
    ckpt_write_s: float           # until the checkpoint is durable (== block for sync)
    load_s: float
    restart_s: float
    rates: dict[str, float] = field(default_factory=dict)
    stall_s: float = 0.0          # input-pipeline stall per step
    straggler_p: float = 0.0      # independent mode: P(a step is gated by a slow node)
    slowdown: float = 1.0
    slow_nodes: SlowNodes | None = None   # persistent mode (sim/stragglers.py)
    hot_spares: int = 0
    replace_s: float = 0.0
    repair_s: float = 0.0
    # An async write on a converged fabric slows the steps it overlaps (sim/checkpoint_contention.py):
    # each of the first ``write_steps`` steps after a snapshot takes ``write_slow_s`` longer.
    write_slow_s: float = 0.0
    write_steps: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.step_s) and self.step_s > 0) or self.total_steps < 1 \
                or self.every_steps < 1:
            raise ClusterSimError(f"run needs a finite step_s > 0, steps >= 1 and a checkpoint interval "
                                  f">= 1 step (got {self.step_s}, {self.total_steps}, {self.every_steps})")

    @property
    def rate(self) -> float:
        return sum(self.rates.values())


@dataclass
class RunStats:
    wall_s: float = 0.0
    useful_s: float = 0.0
    ckpt_s: float = 0.0           # training blocked by checkpoints
    slow_s: float = 0.0           # committed straggler + input-stall time
    recovery_s: float = 0.0       # restart + load + replacement
    interruptions: int = 0
    by_cause: dict[str, int] = field(default_factory=dict)

    @property
    def goodput(self) -> float:
        return self.useful_s / self.wall_s

    @property
    def lost_s(self) -> float:
        """Rolled-back work plus recovery: the wall time nothing useful came from."""
        return self.wall_s - self.useful_s - self.ckpt_s - self.slow_s


class _Trainer:
    def __init__(self, env: simpy.Environment, m: RunModel, rng: np.random.Generator,
                 slow: SlowSchedule | None = None, budget: EventBudget | None = None):
        self.env, self.m, self.rng, self.slow = env, m, rng, slow
        self.st = RunStats()
        self.committed = 0
        self.pending: tuple[int, float, float] | None = None   # (steps, durable at, extra s)
        self.extra = 0.0          # straggler/stall seconds so far (cumulative, rolled back)
        self.committed_extra = 0.0
        self.spares = m.hot_spares
        self.recovering_since: float | None = None
        self.events = 0           # loop turns: bounded, so that no run can spin forever
        self.budget = budget

    def run(self) -> simpy.events.ProcessGenerator:
        m, env = self.m, self.env
        progress, cause = 0, None
        while True:
            self.events += 1
            if self.budget is not None:
                self.budget.spend()
            if self.events > HARD_EVENT_LIMIT:
                raise ClusterSimError(f"run did not finish within {HARD_EVENT_LIMIT:,} segments and "
                                      "interruptions; lower run.failures or the step time")
            try:
                if cause is not None:
                    self.recovering_since = env.now
                    yield env.timeout(self._recovery(cause))
                    self.st.recovery_s += env.now - self.recovering_since
                    self.recovering_since, cause = None, None
                if progress >= m.total_steps:
                    yield from self._finish()
                    return
                k = min(m.every_steps, m.total_steps - progress)
                gated = self.rng.binomial(k, m.straggler_p) if m.straggler_p else 0
                extra = k * m.stall_s + gated * (m.slowdown - 1) * (m.step_s + m.stall_s)
                if self.slow:                       # persistent slow nodes stretch the segment
                    extra = self.slow.finish(env.now, k * m.step_s + extra) - env.now - k * m.step_s
                # steps overlapping the background write of the checkpoint just taken
                shared = m.write_slow_s * min(m.write_steps, k) if self.pending else 0.0
                yield env.timeout(k * m.step_s + extra + shared)
                progress += k
                self.extra += extra
                self.st.ckpt_s += shared
                yield from self._checkpoint(progress)
            except simpy.Interrupt as fail:
                if self.recovering_since is not None:     # struck while recovering
                    self.st.recovery_s += env.now - self.recovering_since
                    self.recovering_since = None
                cause = fail.cause
                self.st.interruptions += 1
                self.st.by_cause[cause] = self.st.by_cause.get(cause, 0) + 1
                self._settle()
                self.pending, self.extra, progress = None, self.committed_extra, self.committed

    def _checkpoint(self, progress: int) -> simpy.events.ProcessGenerator:
        m, env = self.m, self.env
        t0 = env.now
        if self.pending and self.pending[1] > env.now:      # previous async write still busy
            yield env.timeout(self.pending[1] - env.now)
        self._settle()
        yield env.timeout(m.ckpt_block_s)
        self.st.ckpt_s += env.now - t0
        if m.ckpt_write_s <= m.ckpt_block_s:                # sync: durable now
            self._commit(progress, self.extra)
        else:
            self.pending = (progress, env.now + m.ckpt_write_s - m.ckpt_block_s, self.extra)

    def _finish(self) -> simpy.events.ProcessGenerator:
        """The run ends once its last checkpoint is durable."""
        if self.pending:
            t0 = self.env.now
            yield self.env.timeout(max(0.0, self.pending[1] - self.env.now))
            self.st.ckpt_s += self.env.now - t0
            self._settle()

    def _settle(self) -> None:
        if self.pending and self.pending[1] <= self.env.now:
            self._commit(self.pending[0], self.pending[2])
            self.pending = None

    def _commit(self, steps: int, extra: float) -> None:
        self.st.slow_s += extra - self.committed_extra
        self.committed_extra = extra
        self.committed = steps

    def _recovery(self, cause: str) -> float:
        m = self.m
        base = m.restart_s + m.load_s
        if cause not in (*HARDWARE, "straggler") or m.replace_s == 0:
            return base
        if self.spares > 0:
            self.spares -= 1
            self.env.process(self._repair())
            return base
        return base + m.replace_s

    def _repair(self) -> simpy.events.ProcessGenerator:
        yield self.env.timeout(self.m.repair_s)
        self.spares += 1


def _failures(env: simpy.Environment, proc: simpy.Process, m: RunModel,
              rng: np.random.Generator) -> simpy.events.ProcessGenerator:
    causes = list(m.rates)
    probs = np.array([m.rates[c] for c in causes]) / m.rate
    while True:
        yield env.timeout(rng.exponential(1.0 / m.rate))
        if not proc.is_alive:
            return
        proc.interrupt(causes[rng.choice(len(causes), p=probs)])


def _drains(env: simpy.Environment, proc: simpy.Process,
            slow: SlowSchedule) -> simpy.events.ProcessGenerator:
    """Draining a detected slow node restarts the job (cause ``straggler``)."""
    j = 0
    while math.isfinite(t := slow.drain_time(j)):
        yield env.timeout(t - env.now)
        if not proc.is_alive:
            return
        proc.interrupt("straggler")
        j += 1


def simulate_run(m: RunModel, rng: np.random.Generator,
                 budget: EventBudget | None = None) -> RunStats:
    """One seeded run. Failures and stragglers draw from separate child streams, so runs that
    differ only in their checkpoint interval see the same failure times (common random numbers)."""
    fail_rng, slow_rng, node_rng = rng.spawn(3)
    env = simpy.Environment()
    slow = SlowSchedule(m.slow_nodes, node_rng) if m.slow_nodes else None
    trainer = _Trainer(env, m, slow_rng, slow, budget)
    proc = env.process(trainer.run())
    if m.rate > 0:
        env.process(_failures(env, proc, m, fail_rng))
    if slow and m.slow_nodes.detect_s is not None and m.slow_nodes.drain_restart:
        env.process(_drains(env, proc, slow))
    env.run(until=proc)
    st = trainer.st
    st.wall_s, st.useful_s = env.now, m.total_steps * m.step_s
    return st


def monte_carlo(m: RunModel, seed: int, samples: int,
                budget: EventBudget | None = None) -> list[RunStats]:
    return [simulate_run(m, np.random.default_rng([seed, i]), budget) for i in range(samples)]


def daly_goodput(tau_s: float, ckpt_s: float, recovery_s: float, mtbf_s: float) -> float:
    """Expected useful fraction with exponential failures (Daly 2006, exact for this model)."""
    M = mtbf_s
    return tau_s / (M * math.exp(recovery_s / M) * math.expm1((tau_s + ckpt_s) / M))


def young_interval(ckpt_s: float, mtbf_s: float) -> float:
    """Young (1974): compute time between checkpoints that maximises goodput, sqrt(2 C M)."""
    return math.sqrt(2 * ckpt_s * mtbf_s)


def candidate_intervals(m: RunModel, extra: tuple[int, ...] = (), step: float = 0.5,
                        span: int = 6) -> list[int]:
    """Steps per checkpoint around Young's optimum: 2^(step e) times it, |e| <= span."""
    cost = max(m.ckpt_block_s + m.write_slow_s * m.write_steps, 1e-9)
    center = young_interval(cost, 1 / m.rate) / m.step_s if m.rate else m.total_steps
    center = min(center, m.total_steps)          # finite even for a vanishing failure rate
    grid = {max(1, min(m.total_steps, round(center * 2 ** (step * e))))
            for e in range(-span, span + 1)}
    return sorted(grid | {e for e in extra if e >= 1})


def best_interval(m: RunModel, seed: int, samples: int, extra: tuple[int, ...] = (),
                  budget: EventBudget | None = None) -> tuple[int, dict[int, float]]:
    """Mean simulated goodput over a x1/8..x8 grid (sqrt 2 apart) around Young's interval,
    then the two points 2^(+-1/4) around the best; the same seeds for every candidate
    (common random numbers) so that differences between candidates are not noise."""
    def score(k: int) -> float:
        return float(np.mean([s.goodput for s in monte_carlo(replace(m, every_steps=k), seed,
                                                             samples, budget)]))
    candidates = [k for k in candidate_intervals(m, extra) if feasible(m, k)]
    if not candidates:
        require_feasible(m, 1)          # raises: not even one step per checkpoint finishes
        candidates = [1]
    candidates = within_budget(m, candidates, samples)
    curve = {k: score(k) for k in progress(candidates, desc="checkpoint intervals", unit="interval")}
    best = max(curve, key=curve.get)
    for k in (round(best * 2 ** -0.25), round(best * 2 ** 0.25)):
        if 1 <= k <= m.total_steps and k not in curve and feasible(m, k):
            curve[k] = score(k)
    return max(curve, key=curve.get), dict(sorted(curve.items()))


def summarize(stats: list[RunStats]) -> dict:
    g = np.array([s.goodput for s in stats])
    mean = lambda f: float(np.mean([f(s) for s in stats]))  # noqa: E731
    return {
        "run_days": mean(lambda s: s.wall_s / DAY),
        "goodput": float(g.mean()),
        "goodput_se": float(g.std(ddof=1) / math.sqrt(len(g))) if len(g) > 1 else 0.0,
        "interruptions": mean(lambda s: s.interruptions),
        "lost_hours": mean(lambda s: s.lost_s / 3600),
        "recovery_hours": mean(lambda s: s.recovery_s / 3600),
        "checkpoint_hours": mean(lambda s: s.ckpt_s / 3600),
        "checkpoint_overhead_pct": mean(lambda s: 100 * s.ckpt_s / s.wall_s),
        "slow_overhead_pct": mean(lambda s: 100 * s.slow_s / s.wall_s),
    }


# ---- scenario -> run summary (the call the simulate command makes) -------------------

def _get(obj, path: str, default=None):
    """``a.b.c`` from nested dicts or attribute objects (the scenario schema or raw YAML)."""
    for key in path.split("."):
        if obj is None:
            return default
        obj = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
    return default if obj is None else obj


@dataclass(frozen=True)
class Job:
    """What the run model needs from a scenario, resolved."""
    model: object                 # workloads.model.ModelSpec
    gpus: int
    gpus_per_node: int
    gpu_name: str
    tokens_per_step: float
    model_parallel: int
    sharded: bool
    node_nic_bw: float | None = None   # bytes/s of one node's compute NICs (backend storage)

    @property
    def nodes(self) -> int:
        return math.ceil(self.gpus / self.gpus_per_node)


def job_from_scenario(scenario, **override) -> Job:
    from hw_models import catalog
    from workloads.model import resolve
    model = resolve(override.get("model") or _get(scenario, "workload.model"))
    system = catalog.system(_get(scenario, "cluster.system", "dgx-h100"))
    plan = _get(scenario, "workload.parallel") or _get(scenario, "workload.plan", {})
    mp = math.prod(int(_get(plan, k, 1) or 1) for k in ("tp", "pp", "cp"))
    zero = _get(plan, "zero", 0)
    seq = _get(scenario, "workload.seq_len", model.seq_len)
    batch = _get(scenario, "workload.global_batch")
    nodes = _get(scenario, "cluster.nodes")
    fields = {
        "model": model,
        "gpus": _get(scenario, "cluster.gpus", (nodes or 1) * system.gpus_per_node),
        "gpus_per_node": system.gpus_per_node,
        "gpu_name": system.gpu if isinstance(system.gpu, str) else system.gpu.name,
        "tokens_per_step": batch * seq if batch else None,
        "model_parallel": mp,
        "node_nic_bw": system.nics_per_node * system.nic_gbps / 8 * 1e9,
        "sharded": bool(zero) or bool(_get(scenario, "workload.checkpoint.sharded", False)),
    }
    fields.update({k: v for k, v in override.items() if v is not None})
    if not fields["tokens_per_step"]:
        raise ClusterSimError("workload.global_batch is needed to turn run.tokens into steps "
                              "and to size the input pipeline")
    return Job(**fields)


def contention_fields(contention: dict | None, mode: str, write_s: float) -> dict:
    """RunModel fields for an async write that slows the steps it overlaps. ``contention`` is
    ``SimResult.extra["checkpoint_contention"]`` (sim/checkpoint_contention.py): iteration_s_with
    / _without, and, when simulated, overlapped_steps and write_s (the write under contention).
    Without them the write lasts the analytical ``write_s`` and overlaps write_s / slowed step
    steps (at least one). The backend flow model enforces a tier's per-client limit only through
    the compute NICs, so the write is never taken shorter than the analytical one."""
    if not contention or mode != "async":
        return {"ckpt_write_s": write_s}
    slowed = contention["iteration_s_with"]
    write = max(write_s, contention.get("write_s") or 0.0)
    steps = contention.get("overlapped_steps") or max(1.0, write / slowed)
    return {"ckpt_write_s": write, "write_steps": steps,
            "write_slow_s": max(0.0, slowed - contention["iteration_s_without"])}


def run_model(job: Job, step_time_s: float, storage_cfg, ckpt_cfg, data_cfg, run,
              contention: dict | None = None) -> tuple:
    """RunModel plus the checkpoint cost and input-pipeline records it was built from."""
    from hw_models import storage
    from workloads.checkpoint import checkpoint_cost, checkpoint_size
    from workloads.data_loader import input_pipeline
    size = checkpoint_size(job.model, ckpt_cfg.weight_dtype, optimizer=ckpt_cfg.optimizer)
    host = storage.host_link(job.gpu_name) if ckpt_cfg.mode == "async" else None
    path = storage_cfg.path(job.node_nic_bw)
    cost = checkpoint_cost(size.total, storage_cfg.checkpoint_tier(), gpus=job.gpus,
                           gpus_per_node=job.gpus_per_node, model_parallel=job.model_parallel,
                           sharded=job.sharded or ckpt_cfg.sharded, mode=ckpt_cfg.mode, host=host,
                           path=path)
    pipe = input_pipeline(step_time_s, job.tokens_per_step, data_cfg.bytes_per_token, job.nodes,
                          data_cfg.prefetch, storage_cfg.data_tier(), data_cfg.loader_gb_s_per_node,
                          path)
    steps = run.steps or math.ceil(run.tokens / job.tokens_per_step)
    per_s = job.gpus / 1000 / DAY                       # per 1000 GPU-days -> per second of job
    # A rate whose mean time between failures is not a finite float (subnormal inputs) is none.
    rates = {k: v * per_s for k, v in run.failures.model_dump().items()
             if v > 0 and math.isfinite(1.0 / (v * per_s))}
    every = ckpt_cfg.every_steps if ckpt_cfg.every_steps != "auto" else steps
    m = RunModel(step_s=step_time_s, total_steps=steps, every_steps=min(every, steps),
                 ckpt_block_s=cost.blocking_s, load_s=cost.load_s,
                 restart_s=run.restart_s, rates=rates, stall_s=pipe.stall_s,
                 hot_spares=run.hot_spares, replace_s=run.replace_s, repair_s=run.repair_s,
                 **straggler_fields(run.stragglers, job.nodes),
                 **contention_fields(contention, ckpt_cfg.mode, cost.write_s))
    return m, size, cost, pipe


def straggler_fields(cfg, nodes: int) -> dict:
    """RunModel fields for the scenario's ``run.stragglers`` block (sim/run_config.py)."""
    if cfg.mode == "independent":
        return {"straggler_p": 1 - (1 - cfg.fraction) ** nodes, "slowdown": cfg.slowdown}
    if cfg.fraction == 0 or cfg.slowdown == 1:
        return {}
    return {"slow_nodes": SlowNodes(rate=nodes * cfg.fraction / cfg.duration_s,
                                    mean_s=cfg.duration_s, slowdown=cfg.slowdown,
                                    detect_s=cfg.detect_s, drain_restart=cfg.drain == "restart")}


def run_summary(scenario, step_time_s: float, contention: dict | None = None, **override) -> dict:
    """Whole-run figures for a scenario with a ``run`` block, given the simulated step time.
    ``contention``: ``SimResult.extra["checkpoint_contention"]`` (an async write slowing the
    steps it overlaps). ``override`` may set any Job field (gpus, tokens_per_step, ...)."""
    from sim.run_config import CheckpointConfig, DataConfig, RunConfig, StorageConfig, parse
    if _get(scenario, "run") is None:
        raise ClusterSimError("scenario has no 'run' block (tokens or steps, failures, ...)")
    run = parse(RunConfig, _get(scenario, "run"), "run")
    ckpt = parse(CheckpointConfig, _get(scenario, "workload.checkpoint"), "workload.checkpoint")
    data = parse(DataConfig, _get(scenario, "workload.data"), "workload.data")
    stor = parse(StorageConfig, _get(scenario, "cluster.storage"), "cluster.storage")
    if not (math.isfinite(step_time_s) and step_time_s > 0):
        raise ClusterSimError(f"step time must be a finite number of seconds > 0, got {step_time_s}")
    job = job_from_scenario(scenario, **override)
    m, size, cost, pipe = run_model(job, step_time_s, stor, ckpt, data, run, contention)
    user = () if ckpt.every_steps == "auto" else (ckpt.every_steps,)
    require_samples_fit(m, [k for k in candidate_intervals(m, user) if feasible(m, k)], run.samples)
    budget = EventBudget(2 * SEARCH_EVENTS)      # the search plus the final runs
    best, curve = best_interval(m, run.seed, max(2, run.samples // 2), user, budget)
    used = best if ckpt.every_steps == "auto" else ckpt.every_steps
    require_feasible(m, min(used, m.total_steps), user_interval=ckpt.every_steps != "auto")
    out = summarize(monte_carlo(replace(m, every_steps=min(used, m.total_steps)),
                                run.seed, run.samples, budget))
    mtbf = 1 / m.rate if m.rate else math.inf
    out.update({
        "steps": m.total_steps, "every_steps": used, "best_every_steps": best,
        "best_goodput": curve[best], "young_every_steps": (
            young_interval(cost.blocking_s + m.write_slow_s * m.write_steps, mtbf) / step_time_s
            if m.rate else None),
        "mtbf_hours": mtbf / 3600 if m.rate else None, "checkpoint_tb": size.total / 1e12,
        "checkpoint_mode": ckpt.mode, "checkpoint_block_s": cost.blocking_s,
        "checkpoint_write_s": m.ckpt_write_s, "checkpoint_load_s": cost.load_s,
        "ckpt_slowed_step_s": m.step_s + m.write_slow_s if m.write_steps else None,
        "ckpt_overlap_steps": m.write_steps or None,
        "input_stalled": pipe.stalled, "input_stall_s_per_step": pipe.stall_s,
        "input_message": pipe.message(), "samples": run.samples, "seed": run.seed,
        "straggler_mode": run.stragglers.mode,
        # M/G/inf steady state of persistent slow nodes (sim/stragglers.py), for comparison
        "slow_nodes_loss_pct": 100 * m.slow_nodes.loss_fraction if m.slow_nodes else None,
    })
    return out
