"""Serving on a heterogeneous cluster: replicas placed on named pools.

``workload.replica_pools`` names the pool of every replica, in replica order (with
``policy: disaggregated`` the prefill replicas come first, then the decode ones, so
``[fast, slow]`` with one of each puts prefill on ``fast`` and decode on ``slow``:
Splitwise's split, Patel et al. ISCA'24). Each replica runs at its pool's speed (its GPU,
profile and scale-up fabric) with a KV cache sized to its pool's HBM; a KV cache handed
from a prefill replica to a decode replica in another pool crosses the pools' common
network at the slower pool's NIC bandwidth per GPU (one GPU pair, as inside a pool).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from hw_models import catalog
from hw_models.errors import ClusterSimError, InfeasiblePlanError, OutOfMemoryError
from sim.network.analytical import scale_out_p2p_time
from sim.pools import Pool, make_pools, scale_out_curve
from sim.serving.iteration import IterationModel
from sim.serving.loop import ServingLoop
from sim.setup import paced_compute
from workloads.inference import requests as req_mod
from workloads.inference import schedulers
from workloads.inference.kv_cache import PagedKVCache
from workloads.inference.metrics import request_frame, summarize
from workloads.model import resolve


class PooledServingLoop(ServingLoop):
    """The serving loop with one iteration model per replica (its pool's)."""

    def __init__(self, *args, models: dict[int, IterationModel],
                 host_per_rep: dict[int, float] | None = None, **kw):
        super().__init__(*args, **kw)
        self.models = models
        self.host_per_rep = host_per_rep or {}     # engine host time per sequence, by replica
        self.fast_forward = False                  # decode runs are played per replica's model

    def model_of(self, rep) -> IterationModel:
        return self.models[rep.index]

    def host_per_seq_of(self, rep) -> float:
        return self.host_per_rep.get(rep.index, self.host_per_seq)


def _placement(w, pools: list[Pool]) -> list[Pool]:
    names = w.replica_pools
    by_name = {p.name: p for p in pools}
    if names is None:
        raise ClusterSimError("serving on several cluster.pools needs workload.replica_pools: "
                              f"the pool of each of the {w.replica_count} replicas, from "
                              f"{list(by_name)}")
    if len(names) != w.replica_count:
        raise ClusterSimError(f"workload.replica_pools has {len(names)} entries for "
                              f"{w.replica_count} replicas")
    bad = [n for n in names if n not in by_name]
    if bad:
        raise ClusterSimError(f"workload.replica_pools: unknown pool(s) {bad}; allowed: {list(by_name)}")
    span = w.parallel.tp * w.parallel.pp
    for p in pools:
        need = names.count(p.name) * span
        if need > p.gpus:
            raise InfeasiblePlanError(f"pool {p.name!r} has {p.gpus} GPUs but its "
                                      f"{names.count(p.name)} replicas need {need}")
        if names.count(p.name) and w.parallel.tp > p.system.gpus_per_node:
            raise InfeasiblePlanError(f"tp={w.parallel.tp} exceeds the "
                                      f"{p.system.gpus_per_node} GPUs of a node of pool {p.name!r}")
    return [by_name[n] for n in names]


def _kv_blocks(w, it: IterationModel, pool: Pool) -> int:
    if w.kv_cache.blocks:
        return w.kv_cache.blocks
    free = pool.system.gpu_spec.hbm_bytes * w.kv_cache.gpu_memory_utilization - \
        it.weight_bytes_per_gpu()
    blocks = int(free // (it.kv_bytes_per_token() * w.kv_cache.block_size))
    if blocks < 1:
        raise OutOfMemoryError(f"pool {pool.name!r}: the weights leave no room for a KV cache "
                               f"on a {pool.system.gpu_spec.name}; raise tp or pp")
    return blocks


def simulate_serving_pools(sc):
    """A serving run on the scenario's pools -> InferenceResult."""
    from sim.simulate import calibration_of
    from sim.simulate_inference import InferenceResult

    t0 = time.perf_counter()
    w = sc.workload
    pools = make_pools(sc)
    placed = _placement(w, pools)
    model = resolve(w.model)
    its = {p.name: IterationModel(model, w.parallel.tp, w.parallel.pp, w.precision,
                                  paced_compute(p.system.gpu_spec, p.profile, sc.sim.speed_scale,
                                                w.parallel.tp * w.parallel.pp),
                                  p.network, kernels=w.kernels,
                                  launch_floor=catalog.eager_launch_s() if w.enforce_eager else 0.0)
           for p in pools}
    for it in its.values():
        it.set_sampler(catalog.sampler_kernels(w.sampler))
    blocks = {p.name: _kv_blocks(w, its[p.name], p) for p in pools if p in placed}
    roles = (["prefill"] * w.disaggregation.prefill_replicas +
             ["decode"] * w.disaggregation.decode_replicas
             if w.scheduler.policy == "disaggregated" else ["both"] * w.replicas)
    bs = w.kv_cache.block_size
    replicas = [schedulers.Replica(i, PagedKVCache(blocks[p.name], bs), role)
                for i, (p, role) in enumerate(zip(placed, roles, strict=True))]
    first = its[placed[0].name]
    limits = schedulers.Limits(w.scheduler.max_batch, w.scheduler.max_tokens,
                               w.scheduler.chunk_size, w.kv_cache.preemption,
                               first.kv_bytes_per_token())
    reqs = req_mod.generate(w.requests, np.random.default_rng(w.requests.seed), model.seq_len)
    loop = PooledServingLoop(replicas, schedulers.make(w.scheduler.policy, limits), first,
                             w.router, kv_transfer(placed, w), host_bw=25e9,
                             host_per_rep={i: catalog.engine_host_s(w.engine_host, p.system)
                                           for i, p in enumerate(placed)},
                             models={i: its[p.name] for i, p in enumerate(placed)})
    log = loop.run(reqs)
    df = request_frame(reqs)
    block_gib = first.kv_bytes_per_token() * bs / 2**30
    metrics = summarize(reqs, df, w.slo.ttft_ms, w.slo.tpot_ms) | {
        "preemptions": log.preemptions, "kv_cache_peak_gib": log.kv_peak_blocks * block_gib}
    iters = pd.DataFrame(log.iterations,
                         columns=["replica", "start_s", "end_s", "prefill_tokens", "batch"])
    extra = {"policy": w.scheduler.policy, "replicas": w.replica_count,
             "iterations": len(iters),
             "kv_cache_capacity_gib": min(blocks.values()) * block_gib,
             "mean_batch": float(iters.batch.mean()) if len(iters) else 0.0,
             "max_batch_seen": int(iters.batch.max()) if len(iters) else 0,
             "pools": [{"name": p.name, "gpu": p.system.gpu_spec.name, "gpus": p.gpus,
                        "replicas": [i for i, q in enumerate(placed) if q is p],
                        "kv_blocks_per_replica": blocks.get(p.name),
                        "calibration": calibration_of(p.system, p.profile)} for p in pools]}
    extra |= _money(sc, pools, placed, iters, float(df.output_len.sum()))
    return InferenceResult(sc.name, metrics, df, iters, sum(p.gpus for p in pools),
                           time.perf_counter() - t0, extra)


def kv_transfer(placed: list[Pool], w):
    span = w.parallel.tp * w.parallel.pp

    def transfer(src: int, dst: int, nbytes: float) -> float:
        a, b = placed[src], placed[dst]
        if a is b:
            local = [i for i, p in enumerate(placed) if p is a]
            return a.network.p2p_time(local.index(src) * span, local.index(dst) * span, nbytes)
        # the serving loop takes each hand-over's time alone (no contention at either
        # fidelity): the sender's scale-out curve at the slower NIC share
        bw = min(a.system.nic_bw_per_gpu, b.system.nic_bw_per_gpu)
        return scale_out_p2p_time(scale_out_curve(a), nbytes, bw)
    return transfer


def _money(sc, pools: list[Pool], placed: list[Pool], iters: pd.DataFrame, tokens: float):
    from sim.cost import cost_fields
    from sim.energy import Part, Parts, serving_energy
    parts = Parts([Part(p.system, p.nodes) for p in pools])
    where = {i: pools.index(p) for i, p in enumerate(placed)}
    span = sc.workload.parallel.tp * sc.workload.parallel.pp
    energy = serving_energy(iters, parts, where, span, tokens, sc.cluster.pue)
    seconds = float(iters.end_s.max()) if len(iters) else 0.0
    return energy | cost_fields([(p.system, p.gpus) for p in pools], sc.cluster, seconds,
                                tokens, energy.get("energy_j"))
