"""``simulate`` for ``workload: kind: rl``: one RL post-training step, end to end.

Each phase runs on the simulator that already owns it, with the same calibrated costs:
- rollout: the serving simulator (paged KV, continuous batching) on the rollout pool, all
  requests arriving at once; the step waits for the longest response, except DAPO's
  dynamic sampling, which goes on once ``prompts_per_step`` groups are complete;
- log-prob, value and reward passes: forward-only graphs (workloads.rl.build_forward)
  played on the engine over the training layout;
- training: the training simulator, one optimizer step per minibatch of
  ``train.global_batch`` samples packed into rows of ``train.max_seq_len`` tokens;
- weight sync: the reshard from the training to the rollout layout over the fabric
  (nccl) or through the checkpoint storage tier (checkpoint);
- colocated: onload/offload of the training states over the host link.
sim.rl_timeline lays the phases out per pool.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from hw_models import catalog, profile
from hw_models.catalog import SystemSpec
from hw_models.errors import ClusterSimError, InfeasiblePlanError
from hw_models.profile import Profile
from sim import rl_async, rl_pools, rl_sync
from sim.inference_config import MAX_REPLICAS
from sim.rl_config import RLWorkload
from sim.rl_sync import role_ref
from sim.rl_timeline import Phases, PoolSizes, RLResult, idle_gpu_seconds, layout
from sim.scenario import Scenario, parse
from sim.setup import play, resolve_setup
from workloads import rl as steps
from workloads.model import resolve

# NeMo RL's performance summary (v0.4): "total number of tokens used in training in a batch,
# divided by the step time, divided by the total number of GPUs".
TOKENS_DEFINITION = ("NeMo RL: prompt + response tokens of the step's samples / "
                     "(step time x all GPUs)")


STREAM_KEYS = ("single_step_generation_s", "stream_steps", "stream_batch", "stream_bound")


# ---- pools ----------------------------------------------------------------------------
def pool_sizes(w: RLWorkload, world: int, per_node: int) -> PoolSizes:
    if w.colocated:
        return PoolSizes(world, world, True)
    r, t = w.placement.rollout_gpus, w.placement.train_gpus
    if r + t > world:
        raise InfeasiblePlanError(f"placement: rollout_gpus {r} + train_gpus {t} = {r + t} GPUs "
                                  f"but the cluster has {world}; add cluster.nodes or shrink a pool")
    for name, n in (("rollout_gpus", r), ("train_gpus", t)):
        if n % per_node and per_node % n:
            raise InfeasiblePlanError(f"placement.{name} {n}: a pool must be whole nodes of "
                                      f"{per_node} GPUs or a divisor of one node")
    return PoolSizes(r, t, False)


def pool_cluster(sc: Scenario, system: SystemSpec, gpus: int) -> dict:
    """The cluster block of a sub-scenario that runs on ``gpus`` GPUs of this cluster."""
    c = sc.cluster.model_dump(exclude_none=True)
    per = system.gpus_per_node
    if gpus % per == 0:
        return {**c, "nodes": gpus // per}
    # Part of one node: the same GPU and scale-up domain, its share of the node's NICs.
    spec = system.model_dump()
    spec.update(gpus_per_node=gpus, nics_per_node=gpus,
                nic_gbps=system.nic_gbps * system.nics_per_node / per)
    net = dict(c.get("network", {}))
    if "nic_gbps" in net:
        net["nic_gbps"] = net["nic_gbps"] * system.nics_per_node / per
    return {**c, "system": spec, "nodes": 1, "network": net}


# ---- rollout --------------------------------------------------------------------------
def rollout_scenario(sc: Scenario, system: SystemSpec, pools: PoolSizes,
                     count: int | None = None, max_batch: int | None = None) -> Scenario:
    """The serving sub-scenario of one step's requests (or ``count`` requests), all arriving
    at once; ``max_batch`` replaces the scheduler's running-sequence limit."""
    w: RLWorkload = sc.workload
    p = w.rollout.parallel
    replica = p.tp * p.pp * p.ep
    if pools.rollout % replica:
        raise InfeasiblePlanError(f"rollout.parallel tp {p.tp} x pp {p.pp} x ep {p.ep} = {replica} "
                                  f"GPUs does not divide the {pools.rollout} rollout GPUs")
    if pools.rollout // replica > MAX_REPLICAS:
        raise InfeasiblePlanError(f"{pools.rollout:,} rollout GPUs make {pools.rollout // replica:,} "
                                  f"rollout replicas of {replica} GPUs; the serving simulator plays "
                                  f"at most {MAX_REPLICAS:,} (fewer nodes, or a larger "
                                  "rollout.parallel)")
    groups = math.ceil(w.prompts_per_step * w.rollout.oversample * w.rollout.batch_multiplier)
    reqs = {"count": count or groups * w.samples_per_prompt, "arrival": "burst",
            "prompt_len": _length(w.prompt_len), "output_len": _length(w.response_len),
            "seed": w.seed}
    work = {"kind": "inference", "model": rollout_model(w), "precision": w.rollout_precision,
            "parallel": {"tp": p.tp, "pp": p.pp, "ep": p.ep}, "replicas": pools.rollout // replica,
            "scheduler": w.rollout.scheduler.model_dump() | (
                {"max_batch": max_batch} if max_batch else {}), "kv_cache": w.rollout.kv_cache.model_dump(),
            "engine_host": w.rollout.engine_host, "enforce_eager": w.rollout.enforce_eager,
            "sampler": w.rollout.sampler,
            "requests": reqs}
    return parse({"name": f"{sc.name}-rollout", "cluster": pool_cluster(sc, system, pools.rollout),
                  "workload": work, "sim": sc.sim.model_dump()}, "rollout")


def rollout_model(w: RLWorkload):
    """The policy as the rollout engine serves it: its context is the step's longest prompt +
    response (what RL frameworks set as vLLM's max_model_len), when that is longer than the
    preset's training seq_len and both lengths are bounded."""
    highs = [v if isinstance(v, int) else v.high for v in (w.prompt_len, w.response_len)]
    model = resolve(w.model)
    if None in highs or sum(highs) <= model.seq_len:
        return w.model
    return model.with_seq_len(sum(highs)).model_dump(mode="json")


def _length(v):
    return v if isinstance(v, int) else v.model_dump()


def run_rollout(sc: Scenario, system: SystemSpec, pools: PoolSizes, prof: Profile | None) -> dict:
    """Generation time, the kept samples' lengths, straggler GPU-seconds and the tail."""
    from sim.simulate_inference import simulate_inference
    w: RLWorkload = sc.workload
    with _where("rollout"):
        res = simulate_inference(rollout_scenario(sc, system, pools), prof)
    df = res.requests.sort_values("id")
    group = df.id.to_numpy() // w.samples_per_prompt
    if w.rollout.oversample > 1:   # dynamic sampling: the first prompts_per_step groups to finish
        done = df.groupby(group).finish_s.max().sort_values()
        keep_groups = done.index[:w.prompts_per_step]
        gen = float(done.iloc[w.prompts_per_step - 1])
        kept = done_ = df[np.isin(group, keep_groups)]
    else:                          # the whole batch to its last response; train on the first groups
        gen, kept, done_ = float(df.finish_s.max()), df[group < w.prompts_per_step], df
    p = w.rollout.parallel
    ends = df.groupby("replica").finish_s.max().clip(upper=gen)
    straggle = float(((gen - ends) * p.tp * p.pp * p.ep).sum())
    lengths = (kept.prompt_len + kept.output_len).to_numpy()
    rounds = w.rollout.gen_batches          # every dynamic-sampling round costs the first's
    return {"generation_s": gen * rounds, "lengths": lengths, "straggler_gpu_s": straggle * rounds,
            "tail_s": gen - float(np.quantile(done_.finish_s, 0.9)),
            "generated_tokens": int(done_.output_len.sum()) * rounds, "replicas": res.extra["replicas"],
            "kv_cache_capacity_gib": res.extra["kv_cache_capacity_gib"],
            "mean_batch": res.extra["mean_batch"], "generated_samples": len(df) * rounds,
            "preemptions": int(df.preemptions.sum()) * rounds}


def _streamed(gen: dict, steady: dict) -> dict:
    """One step's rollout figures with the steady-state generation of a stream across steps
    (sim.rl_async): the tail is hidden by the next steps' requests, so no replica waits."""
    return {**gen, "generation_s": steady["generation_s"], "straggler_gpu_s": 0.0,
            "single_step_generation_s": gen["generation_s"],
            **{k: steady[k] for k in STREAM_KEYS[1:]}}


# ---- training-side passes ---------------------------------------------------------------
def train_scenario(sc: Scenario, system: SystemSpec, pools: PoolSizes, model, seq_len: int,
                   rows: int, forward: bool = False, logprob: bool = True) -> Scenario:
    """The training sub-scenario of one pass; ``forward``: a forward-only pass, whose
    microbatches hold ``train.logprob_micro_batch`` rows; ``logprob``: the head computes
    per-token log-probabilities (the policy's and the reference's passes), not a value or
    a score."""
    w: RLWorkload = sc.workload
    t = w.train
    p = t.parallel
    mb = t.logprob_rows if forward else t.micro_batch
    copy = p.tp * p.pp * p.cp
    dp = pools.train // copy
    if dp < 1 or pools.train % copy:
        raise InfeasiblePlanError(f"train.parallel tp {p.tp} x pp {p.pp} x cp {p.cp} does not "
                                  f"divide the {pools.train} training GPUs")
    mb = min(mb, math.ceil(rows / dp))     # no microbatch larger than a rank's rows
    par = p.model_dump()
    work = {"kind": "training", "model": model, "seq_len": seq_len, "micro_batch": mb,
            "global_batch": steps.round_up(rows, dp * mb), "precision": w.precision,
            "parallel": par, "recompute": t.recompute, "attention": t.attention,
            "moe": t.moe.model_dump(exclude_defaults=True),
            "overlap_param_gather": t.overlap_param_gather,
            "grad_reduce_bytes": t.grad_reduce_bytes, "logprob_loss": logprob,
            "grad_accumulation_fusion": t.grad_accumulation_fusion}
    return parse({"name": f"{sc.name}-train", "cluster": pool_cluster(sc, system, pools.train),
                  "workload": work, "sim": {**sc.sim.model_dump(), "fidelity": "analytical"}}, "train")


def forward_time(sub: Scenario, prof: Profile | None) -> float:
    """One forward-only pass of the sub-scenario's batch on its training layout."""
    setup = resolve_setup(sub)
    return play(setup, steps.build_forward(setup.model, setup.plan, setup.options), prof)


def train_time(sub: Scenario, prof: Profile | None) -> float:
    from sim.simulate import simulate_training
    return simulate_training(sub, prof, band=False).iteration_time_s


def run_passes(sc: Scenario, system: SystemSpec, pools: PoolSizes, lengths: np.ndarray,
               prof: Profile | None) -> tuple[list[tuple[str, float]], dict]:
    w: RLWorkload = sc.workload
    t = w.train
    cache: dict = {}
    out = []
    if t.max_seq_len is not None and int(lengths.max()) > t.max_seq_len:
        raise InfeasiblePlanError(f"train.max_seq_len {t.max_seq_len} is shorter than a prompt + "
                                  f"response of {int(lengths.max())} tokens; raise it or lower "
                                  "response_len's high")
    rows_all, row_len = steps.pack_rows(lengths, t.max_seq_len)
    batches = steps.minibatches(len(lengths), t.global_batch)
    for ps in steps.PASSES[w.algorithm]:
        model = role_ref(w, ps.role)
        logprob = ps.role in ("policy", "reference")  # critic values / reward scores: no log-softmax
        key = (json.dumps(model, sort_keys=True), logprob)   # passes of one shape are costed once
        if not ps.train:
            out.append((ps.name, _cached(cache, (key, rows_all), lambda m=model, lp=logprob: forward_time(
                train_scenario(sc, system, pools, m, row_len, rows_all, forward=True, logprob=lp),
                prof))))
            continue
        total, start = 0.0, 0
        for n in batches:
            rows, rl_ = steps.pack_rows(lengths[start:start + n], t.max_seq_len)
            start += n
            total += _cached(cache, (key, "train", rows, rl_), lambda m=model, r=rows, s=rl_, lp=logprob:
                             train_time(train_scenario(sc, system, pools, m, s, r, logprob=lp), prof))
        out.append((ps.name, total * t.epochs))
    return out, {"packed_rows": rows_all, "row_len": row_len,
                 "optimizer_steps": len(batches) * t.epochs}


def _cached(cache: dict, key, fn) -> float:
    if key not in cache:
        cache[key] = fn()
    return cache[key]


# ---- the step ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Where:
    """A plain cluster a phase runs on: its scenario, system and profile."""
    sc: Scenario
    system: SystemSpec
    profile: Profile


def _where_of(sc: Scenario, prof: Profile | None) -> Where:
    system = catalog.system(sc.cluster.system)
    return Where(sc, system, prof or profile.load(sc.cluster.profile or system.default_profile))


def simulate_rl(sc: Scenario, prof: Profile | None = None) -> RLResult:
    t0 = time.perf_counter()
    w: RLWorkload = sc.workload
    if rl_pools.uses_pools(sc):
        return _simulate_pooled(sc, prof, t0)
    here = _where_of(sc, prof)
    system = here.system
    pools = pool_sizes(w, sc.cluster.nodes * system.gpus_per_node, system.gpus_per_node)
    model = resolve(w.model)

    def sync() -> dict:
        return (rl_sync.checkpoint_sync(sc, system, pools, model) if w.sync == "checkpoint"
                else rl_sync.nccl_sync(sc, system, pools, model, here.profile))
    return _step(sc, here, here, pools, sync, t0, {})


def _simulate_pooled(sc: Scenario, prof: Profile | None, t0: float) -> RLResult:
    """Rollout on one pool, training on another (sim.rl_pools); a named pool's own profile
    is used unless the caller passes one."""
    where = rl_pools.resolve(sc)
    if isinstance(where, Scenario):            # colocated on a cluster of one pool
        return simulate_rl(where, prof)
    names = {"rollout_pool": where.rollout_pool, "train_pool": where.train_pool}
    if where.same_pool:
        res = simulate_rl(where.rollout, prof)
        res.extra["placement"] = {**res.extra["placement"], **names}
        return res
    w: RLWorkload = sc.workload
    ro, tr = _where_of(where.rollout, prof), _where_of(where.train, prof)
    model = resolve(w.model)

    def sync() -> dict:
        if w.sync == "checkpoint":
            return rl_sync.checkpoint_sync(where.train, tr.system, where.sizes, model)
        return rl_pools.cross_pool_sync(sc, where, model.params,
                                        rl_sync.WEIGHT_BYTES[w.rollout_precision])
    return _step(sc, ro, tr, where.sizes, sync, t0, names)


def _step(sc: Scenario, ro: Where, tr: Where, pools: PoolSizes, sync_fn, t0: float,
          names: dict) -> RLResult:
    w: RLWorkload = sc.workload
    if w.off_policy_steps and pools.colocated:
        raise InfeasiblePlanError(
            f"off_policy_steps {w.off_policy_steps} overlaps rollout with training, which needs "
            "separate pools: placement: {rollout_gpus: N, train_gpus: M}")
    model = resolve(w.model)
    _check_ep(w, model)
    gen = run_rollout(ro.sc, ro.system, pools, ro.profile)
    if not pools.colocated and rl_async.streams(w):
        with _where("rollout"):
            gen = _streamed(gen, rl_async.steady_generation(
                ro.sc, ro.system, pools, ro.profile, gen["replicas"], gen["generation_s"]))
    with _where("train"):
        passes, packing = run_passes(tr.sc, tr.system, pools, gen["lengths"], tr.profile)
    swap = rl_sync.reference_swap(tr.sc, tr.system, pools)
    passes = [(n, t + swap if n == "reference_logprob" else t) for n, t in passes]
    sync = rl_sync.with_tensor_cost(sync_fn(), model, tr.system)
    moves = rl_sync.offload(tr.sc, tr.system, pools)
    ph = Phases(gen["generation_s"], tuple(passes), sync["weight_sync_s"],
                moves["onload_s"], moves["offload_s"])
    timeline, step = layout(ph, pools, w.off_policy_steps)
    tokens = int(gen["lengths"].sum())
    metrics = {
        "step_time_s": step, "generation_s": ph.generation, "logprob_s": ph.logprob,
        "train_s": ph.train, "weight_sync_s": ph.weight_sync,
        "offload_s": ph.onload + ph.offload,
        "idle_s": idle_gpu_seconds(timeline, pools, step) + gen["straggler_gpu_s"],
        "tokens_per_s_per_gpu": tokens / step / pools.world,
        "tokens_per_s_per_gpu_definition": TOKENS_DEFINITION,
        "generation_tail_s": gen["tail_s"], "generation_straggler_gpu_s": gen["straggler_gpu_s"],
        "generated_tokens": gen["generated_tokens"],
        "step_tokens": tokens, "passes": dict(passes)}
    extra = {"algorithm": w.algorithm, "placement": "colocated" if pools.colocated else
             {"rollout_gpus": pools.rollout, "train_gpus": pools.train, **names},
             "off_policy_steps": w.off_policy_steps, "sync": w.sync,
             "rollout_replicas": gen["replicas"], "rollout_mean_batch": gen["mean_batch"],
             "kv_cache_capacity_gib": gen["kv_cache_capacity_gib"],
             "rollout_preemptions": gen["preemptions"],
             **{k: gen[k] for k in STREAM_KEYS if k in gen},
             "generated_samples": gen["generated_samples"], **packing,
             "sync_bytes_per_gpu": sync["sync_bytes_per_gpu"],
             "sync_tensors": sync["sync_tensors"], "sync_tensor_s": sync["sync_tensor_s"],
             "offload_bytes_per_gpu": moves["offload_bytes_per_gpu"], "reference_swap_s": swap,
             "onload_s": ph.onload, "engine_sleep_s": moves["engine_sleep_s"]}
    return RLResult(sc.name, metrics, timeline, pools.world, time.perf_counter() - t0, extra)


@contextmanager
def _where(phase: str):
    """Name the phase in a sub-simulation's one-line error (same error class)."""
    try:
        yield
    except ClusterSimError as exc:
        if str(exc).startswith(phase):
            raise
        raise type(exc)(f"{phase}: {exc}") from None


def _check_ep(w: RLWorkload, model) -> None:
    """Expert parallelism and MoE options only mean something for a MoE policy."""
    dense = getattr(model, "moe", None) is None
    for where, ep in (("rollout", w.rollout.parallel.ep), ("train", w.train.parallel.ep)):
        if ep > 1 and dense:
            raise InfeasiblePlanError(f"{where}.parallel.ep {ep}: the policy is a dense model "
                                      "(no experts); use ep: 1")
    if dense and w.train.moe != type(w.train.moe)():
        raise InfeasiblePlanError("train.moe: the policy is a dense model (no experts); drop "
                                  "train.moe")


__all__ = ["simulate_rl", "RLResult"]
