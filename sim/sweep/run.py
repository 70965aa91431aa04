"""Run a sweep: enumerate configurations, stage 1 (closed form) over all of them in
chunks, stage 2 (DES) over the top K, merge the Parquet, summarise."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from tqdm import tqdm

from hw_models import catalog
from hw_models.errors import ClusterSimError
from sim import scenario as scenario_mod
from sim.sweep import evaluate as ev
from sim.sweep import executors, plans, summary
from sim.sweep.spec import Sweep
from sim.sweep.store import PartStore
from workloads.model import resolve


@dataclass
class Options:
    out: str
    workers: int = 1
    executor: str = "local"
    scheduler: str | None = None
    resume: bool = False
    verify_top: int = 0
    chunk_size: int = 1024
    progress: bool = True
    stop_after_chunks: int | None = None     # testing hook: simulate a kill
    max_configs: int = 1_000_000             # refuse larger spaces (--max-configs)


# Configurations a sweep may have unless --max-configs says more: about a minute of closed
# form per worker (~20k plans/s) and a results table of a few hundred MB.
MAX_CONFIGS = Options.max_configs


class Interrupted(RuntimeError):
    """Raised by the stop_after_chunks hook, as a kill would stop the sweep."""


def _plan_context(sweep: Sweep, axis: dict[str, Any]) -> tuple:
    """(model, GPU count, global batch) of the base scenario at one axis point."""
    sc = scenario_mod.parse(sweep.scenario_dict(axis), f"{sweep.source}: base")
    model = resolve(sc.workload.model).with_seq_len(sc.workload.seq_len)
    world = sum(p.nodes * catalog.system(p.system).gpus_per_node
                for p in sc.cluster.pools) if sc.cluster.pools else \
        sc.cluster.nodes * catalog.system(sc.cluster.system).gpus_per_node
    return model, world, sc.workload.global_batch


def iter_configurations(sweep: Sweep) -> Iterator[ev.Config]:
    """Every configuration, one at a time, ids in order (axis points, then plans)."""
    i = 0
    for axis in sweep.axis_points():
        if sweep.plans is None:
            yield i, axis, None
            i += 1
            continue
        for plan in plans.candidates(sweep.plans, *_plan_context(sweep, axis)):
            yield i, axis, plan
            i += 1


def count_configurations(sweep: Sweep, limit: int) -> int:
    """How many configurations the sweep has; stops counting (returns > limit) past ``limit``,
    so that counting a space of billions stays as cheap as counting ``limit`` of them."""
    if sweep.plans is None:
        return sweep.n_axis_points()
    n = 0
    for axis in sweep.axis_points():
        n += plans.count(sweep.plans, *_plan_context(sweep, axis))
        if n > limit:
            break
    return n


def check_base(sweep: Sweep) -> None:
    """The base scenario at the first axis point parses and its model and systems are in the
    catalog: a misspelt preset is one error before the sweep, not every row rejected as an
    invalid scenario with a summary that exits 0 (sweeps without ``plans`` never resolve
    the base otherwise)."""
    axis = next(iter(sweep.axis_points()), {})
    sc = scenario_mod.parse(sweep.scenario_dict(axis), f"{sweep.source}: base")
    resolve(sc.workload.model)
    for system in [p.system for p in sc.cluster.pools] if sc.cluster.pools else [sc.cluster.system]:
        catalog.system(system)


def check_size(sweep: Sweep, limit: int) -> int:
    """The number of configurations, or one clear error when there are none or too many."""
    check_base(sweep)
    if sweep.plans is not None and ev.is_rl(sweep.base):
        raise ClusterSimError(f"{sweep.source}: plans: auto searches training plans; an RL sweep "
                              "takes axes (e.g. workload.placement, workload.rollout.parallel.tp, "
                              "workload.train.parallel.tp, workload.off_policy_steps)")
    n = count_configurations(sweep, limit)
    if n > limit:
        more = "" if sweep.plans is None else "more than "
        raise ClusterSimError(
            f"{sweep.source}: {more}{n:,} configurations ({sweep.n_axis_points():,} axis points"
            f"{' x plans' if sweep.plans is not None else ''}), above the limit of {limit:,}; "
            f"narrow plans/axes, or raise the limit with --max-configs")
    if n == 0:
        raise ClusterSimError(f"{sweep.source}: the plan constraints leave no candidate "
                              "(tp/pp values must divide the GPU count)")
    return n


def configurations(sweep: Sweep, limit: int = MAX_CONFIGS) -> list[ev.Config]:
    """All configurations as a list (small sweeps, e.g. the explorer's); refuses > ``limit``."""
    check_size(sweep, limit)
    return list(iter_configurations(sweep))


def configs_by_id(sweep: Sweep, ids: set[int]) -> dict[int, ev.Config]:
    """The configurations with these ids (one more pass over the enumeration)."""
    out: dict[int, ev.Config] = {}
    for cfg in iter_configurations(sweep):
        if cfg[0] in ids:
            out[cfg[0]] = cfg
            if len(out) == len(ids):
                break
    return out


def _chunks(sweep: Sweep, size: int) -> Iterator[list[ev.Config]]:
    it = iter_configurations(sweep)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def run(sweep: Sweep, opts: Options, executor: executors.Executor | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    n = check_size(sweep, opts.max_configs)
    store = PartStore(opts.out, {"base": sweep.base, "n": n, "chunk": opts.chunk_size,
                                 "axes": sweep.axes, "plans": repr(sweep.plans)}, opts.resume)
    own = executor is None
    executor = executor or executors.make(opts.executor, opts.workers, opts.scheduler)
    try:
        t1 = time.perf_counter()
        n_new = _stage1(sweep, n, store, executor, opts)
        t_closed = time.perf_counter() - t1
        frame = over_budget(store.read("a").sort_values("id", ignore_index=True),
                            sweep.file.budget_usd_per_hour)
        _stage2(sweep, frame, store, executor, opts)
    finally:
        if own:
            executor.close()
    frame = _merge(frame, store.read("v"))
    store.finish(frame)
    out = summary.summarize(frame, sweep.file.top, sweep.file.objective)
    out["wall_s"] = time.perf_counter() - t0
    out["closed_form_s"] = t_closed
    out["plans_per_s"] = n_new / t_closed if t_closed > 0 and n_new else 0.0
    out["best"] = _best(sweep, out["top"])
    return out


def over_budget(frame: pd.DataFrame, budget: float | None) -> pd.DataFrame:
    """Reject feasible rows whose cluster costs more than ``budget`` USD per hour."""
    if budget is None or "usd_per_hour" not in frame:
        return frame
    hit = (frame.status == "ok") & (frame.usd_per_hour > budget)
    frame.loc[hit, ["status", "reason"]] = ["over_budget", "over budget"]
    frame.loc[hit, "detail"] = [f"{u:,.0f} USD/h > budget {budget:,.0f}"
                                for u in frame.usd_per_hour[hit]]
    return frame


def _stage1(sweep, n, store, executor, opts) -> int:
    done_chunks = store.done("a")
    bar = tqdm(total=n, unit="plan", file=sys.stderr, disable=None if opts.progress else True,
               desc="closed form")
    todo: list[int] = []

    def pending():                      # chunks not finished by an earlier (killed) run
        for i, chunk in enumerate(_chunks(sweep, opts.chunk_size)):
            if i in done_chunks:
                bar.update(len(chunk))
                continue
            todo.append(i)
            yield sweep.base, chunk
    done = 0
    for k, (j, rows) in enumerate(executor.map(ev.evaluate_chunk, pending())):
        store.write("a", todo[j], rows)
        bar.update(len(rows))
        done += len(rows)
        if opts.stop_after_chunks is not None and k + 1 >= opts.stop_after_chunks:
            bar.close()
            raise Interrupted(f"stopped after {k + 1} chunks")
    bar.close()
    return done


def _stage2(sweep, frame, store, executor, opts) -> None:
    if opts.verify_top <= 0 or frame.empty:
        return
    objective = "time" if sweep.file.objective == "energy" else sweep.file.objective
    top = summary.ranked(frame, objective).head(opts.verify_top)["id"].tolist()
    todo = [int(c) for c in top if int(c) not in store.done("v")]
    configs = configs_by_id(sweep, set(todo))
    bar = tqdm(total=len(todo), unit="sim", file=sys.stderr, disable=None if opts.progress else True,
               desc="DES verify")
    for i, row in executor.map(ev.verify, [(sweep.base, configs[c]) for c in todo]):
        store.write("v", todo[i], [row])
        bar.update(1)
    bar.close()


def _merge(frame: pd.DataFrame, des: pd.DataFrame) -> pd.DataFrame:
    if des.empty or len(des.columns) == 1:
        return frame
    merged = frame.merge(des, on="id", how="left")
    if "des_iteration_time_s" in merged:
        merged["des_rel_error"] = merged.iteration_time_s / merged.des_iteration_time_s - 1
    return merged


def _best(sweep: Sweep, top: list[dict]) -> dict[str, Any] | None:
    if not top:
        return None
    row = dict(top[0])
    _, axis, raw = configs_by_id(sweep, {int(row["id"])})[int(row["id"])]
    row["scenario"] = ev.scenario_for(sweep.base, axis, raw)
    return row
