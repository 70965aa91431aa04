"""``simulate`` for ``workload: kind: inference``: joins model, replica plan and cluster,
sizes the paged KV cache from memory, runs the serving loop, derives the metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hw_models import catalog, profile
from hw_models.errors import InfeasiblePlanError, OutOfMemoryError
from hw_models.jsonio import dumps
from hw_models.profile import Profile
from sim.costs import OpCosts
from sim.inference_config import InferenceWorkload
from sim.network import AnalyticalNetwork
from sim.scenario import Scenario
from sim.serving.dsv4_iteration import DSV4IterationModel
from sim.serving.hybrid_iteration import HybridIterationModel
from sim.serving.iteration import IterationModel
from sim.serving.loop import ServingLoop
from sim.serving.moe_iteration import MoEIterationModel
from sim.setup import paced_compute, resolve_cluster
from workloads.dsv4 import dsv4
from workloads.inference import requests as req_mod
from workloads.inference import schedulers
from workloads.inference.hybrid_ops import check_hybrid_plan, state_blocks
from workloads.inference.kv_cache import PagedKVCache
from workloads.inference.metrics import request_frame, summarize
from workloads.model import resolve

if TYPE_CHECKING:
    import pandas as pd

GIB = 2**30


@dataclass
class InferenceResult:
    name: str
    metrics: dict[str, Any]
    requests: pd.DataFrame                 # one row per request
    iterations: pd.DataFrame               # replica, start_s, end_s, prefill_tokens, batch
    world_size: int
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "inference", **self.metrics,
                "world_size": self.world_size, **self.extra}

    def to_chrome_trace(self, path: str | Path | None = None) -> dict[str, Any]:
        """pid = replica, tid 0 = its iterations; one "X" event per iteration (us)."""
        it = self.iterations
        events = [{"name": "prefill+decode" if r.prefill_tokens and r.batch > 0 else "iteration",
                   "cat": "serving", "ph": "X", "pid": int(r.replica), "tid": 0,
                   "ts": r.start_s * 1e6, "dur": (r.end_s - r.start_s) * 1e6,
                   "args": {"prefill_tokens": int(r.prefill_tokens), "batch": int(r.batch)}}
                  for r in it.itertuples()]
        events += [{"name": "process_name", "ph": "M", "pid": int(p), "args": {"name": f"replica {p}"}}
                   for p in it.replica.unique()]
        from sim.energy import serving_power_events
        events += serving_power_events(it, self.extra.get("energy"))   # "ph": "C" watts per GPU
        trace = {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"scenario": self.name}}
        if path is not None:
            Path(path).write_text(dumps(trace))
        return trace


def _check_plan(w: InferenceWorkload, model, gpus: int, domain: int) -> None:
    tp, pp = w.parallel.tp, w.parallel.pp
    if model.heads % tp or model.kv_heads_ % tp and tp % model.kv_heads_:
        raise InfeasiblePlanError(f"tp={tp} must divide heads ({model.heads}) and kv_heads "
                                  f"({model.kv_heads_}) or be a multiple of kv_heads")
    if pp > model.layers:
        raise InfeasiblePlanError(f"pp={pp} exceeds the model's {model.layers} layers")
    if w.kernels == "eager" and not model.uniform:
        raise InfeasiblePlanError("workload.kernels: eager is modelled for dense models only; "
                                  "use fused for MoE, MLA or windowed-attention models")
    ep = w.parallel.ep
    if ep > 1 and (model.moe is None or model.moe.experts % ep):
        what = "a mixture-of-experts model" if model.moe is None else \
            f"ep to divide the model's {model.moe.experts} experts"
        raise InfeasiblePlanError(f"parallel.ep={ep} needs {what}")
    if model.hybrid_pattern is not None:
        check_hybrid_plan(model, tp, ep)
    need = w.replica_count * tp * pp * ep
    if need > gpus:
        raise InfeasiblePlanError(f"{w.replica_count} replicas x ep {ep} x tp {tp} x pp {pp} = "
                                  f"{need} GPUs but the cluster has {gpus}; add cluster.nodes")
    # Tensor parallelism inside one NVLink domain (a node, or an NVL72 rack), or over whole
    # domains (vLLM's multi-node tensor parallelism): its all-reduces then cross the NICs.
    if tp > domain and tp % domain:
        raise InfeasiblePlanError(f"tp={tp} exceeds the {domain} GPUs of a scale-up (NVLink) "
                                  f"domain and is not a multiple of it")


def kv_blocks(w: InferenceWorkload, it: IterationModel, hbm_bytes: float) -> int:
    """Blocks that fit beside the weights in ``gpu_memory_utilization`` of HBM, per GPU
    (every GPU of a replica holds the same number of blocks of its layers/heads). A hybrid
    model's sequences also hold their Mamba state in blocks of the same pool
    (``seq_blocks``): room for at least one sequence's state and block is needed."""
    if w.kv_cache.blocks:
        return w.kv_cache.blocks
    weights = it.weight_bytes_per_gpu()
    free = hbm_bytes * w.kv_cache.gpu_memory_utilization - weights
    block = it.kv_bytes_per_token() * w.kv_cache.block_size
    if free < block * (1 + seq_blocks(w, it)):
        what = "a KV cache" if not it.state_bytes_per_seq() else f"one sequence's KV and {_state(it.model)}"
        raise OutOfMemoryError(
            f"weights take {weights / GIB:.1f} GiB per GPU, leaving no room for {what} in "
            f"{w.kv_cache.gpu_memory_utilization:.0%} of {hbm_bytes / GIB:.0f} GiB; raise tp or pp")
    return int(free // block)


def _state(model) -> str:
    """What a sequence's fixed state is, for messages."""
    return "window and compressor state" if dsv4(model) is not None else "Mamba state"


def seq_blocks(w: InferenceWorkload, it: IterationModel) -> int:
    """Blocks of the pool each running sequence holds for its fixed state (hybrid models'
    Mamba conv and SSM state; 0 otherwise)."""
    return state_blocks(it.state_bytes_per_seq(), it.kv_bytes_per_token() * w.kv_cache.block_size)


def iteration_model(w: InferenceWorkload, model, compute, network, domain_gpus: int) -> IterationModel:
    """The iteration cost model of a replica: uniform dense models layer by layer; MoE / MLA /
    windowed models per kind of layer with expert parallelism (docs/moe.md); hybrid Mamba
    models per kind of sub-layer with their per-sequence state (docs/inference.md);
    DeepSeek-V4 models per kind of layer with their window state (docs/moe.md)."""
    tp, pp = w.parallel.tp, w.parallel.pp
    if model.uniform:
        return IterationModel(model, tp, pp, w.precision, compute, network, kernels=w.kernels)
    cls = HybridIterationModel if model.hybrid_pattern else MoEIterationModel
    if dsv4(model) is not None:
        cls = DSV4IterationModel
    return cls(model, tp, pp, w.precision, compute, network, ep=w.parallel.ep,
               dispatcher=w.moe.dispatcher, overlap=w.moe.overlap, domain_gpus=domain_gpus,
               dispatch_dtype=w.moe.wire_dtype(w.precision.startswith("fp8")),
               deepep_mode=w.moe.deepep_mode)


def simulate_inference(sc: Scenario, prof: Profile | None = None) -> InferenceResult:
    import pandas as pd
    t0 = time.perf_counter()
    w: InferenceWorkload = sc.workload
    cl = resolve_cluster(sc)
    gpu = cl.gpu
    prof = prof or cl.profile
    model = resolve(w.model)
    _check_plan(w, model, cl.layout.world_size, cl.layout.domain_gpus)
    # Serving is priced in closed form: iterations are cached by batch shape.
    network = AnalyticalNetwork(cl.layout, prof)
    compute = paced_compute(gpu, prof, sc.sim.speed_scale,
                            w.parallel.tp * w.parallel.pp * w.parallel.ep)
    it = iteration_model(w, model, compute, network, cl.layout.domain_gpus)
    if w.enforce_eager:
        it.set_launch_floor(catalog.eager_launch_s())
    it.set_sampler(catalog.sampler_kernels(w.sampler))
    blocks = kv_blocks(w, it, gpu.hbm_bytes)
    rng = np.random.default_rng(w.requests.seed)
    reqs = req_mod.generate(w.requests, rng, model.seq_len)
    longest = max(r.prompt + r.output for r in reqs)
    per_seq = seq_blocks(w, it)
    if PagedKVCache(blocks, w.kv_cache.block_size, per_seq).blocks_for(longest) > blocks:
        raise OutOfMemoryError(f"the KV cache holds {blocks * w.kv_cache.block_size} tokens per "
                               f"replica, less than one request of {longest}"
                               f"{' and its ' + _state(model) if per_seq else ''}; raise tp/pp")
    replicas = make_replicas(w, blocks, per_seq)
    limits = schedulers.Limits(w.scheduler.max_batch, w.scheduler.max_tokens, w.scheduler.chunk_size,
                               w.kv_cache.preemption, it.kv_bytes_per_token(), it.state_bytes_per_seq())
    span = w.parallel.tp * w.parallel.pp * w.parallel.ep
    host_bw = OpCosts(it.compute, network).host_bw

    def transfer(src: int, dst: int, nbytes: float) -> float:
        return network.p2p_time(src * span, dst * span, nbytes)

    loop = ServingLoop(replicas, schedulers.make(w.scheduler.policy, limits), it, w.router,
                       transfer, host_bw, catalog.engine_host_s(w.engine_host, cl.system))
    log = loop.run(reqs)
    df = request_frame(reqs)
    metrics = summarize(reqs, df, w.slo.ttft_ms, w.slo.tpot_ms)
    block_gib = it.kv_bytes_per_token() * w.kv_cache.block_size / GIB
    metrics |= {"kv_cache_peak_gib": log.kv_peak_blocks * block_gib, "preemptions": log.preemptions}
    iters = pd.DataFrame(log.iterations, columns=["replica", "start_s", "end_s", "prefill_tokens", "batch"])
    extra = {"policy": w.scheduler.policy, "replicas": w.replica_count,
             "kv_blocks_per_replica": blocks, "kv_cache_capacity_gib": blocks * block_gib,
             "weights_gib_per_gpu": it.weight_bytes_per_gpu() / GIB, "iterations": len(iters),
             **({"mamba_state_mib_per_seq": it.state_bytes_per_seq() / 2**20,
                 "state_blocks_per_seq": per_seq} if per_seq else {}),
             "cost_evaluations": it.evaluations, "mean_batch": float(iters.batch.mean()) if len(iters) else 0.0,
             "max_batch_seen": int(iters.batch.max()) if len(iters) else 0}
    extra |= serving_money(sc, cl.system, iters, span, float(df.output_len.sum()))
    extra["calibration"] = profile.calibration_status(
        prof, cl.system.gpu if isinstance(cl.system.gpu, str) else cl.system.gpu.name)
    return InferenceResult(sc.name, metrics, df, iters, w.replica_count * span,
                           time.perf_counter() - t0, extra)


def serving_money(sc: Scenario, system, iters: pd.DataFrame, span: int, tokens: float) -> dict:
    """energy_j, joules_per_token (per generated token), cost_usd of the whole serving run."""
    from sim.cost import cost_fields
    from sim.energy import Part, Parts, serving_energy
    parts = Parts([Part(system, sc.cluster.nodes)])   # the whole cluster draws and is paid
    gpus = parts.world
    energy = serving_energy(iters, parts, {}, span, tokens, sc.cluster.pue)
    seconds = float(iters.end_s.max()) if len(iters) else 0.0
    return energy | cost_fields([(system, gpus)], sc.cluster, seconds, tokens,
                                energy.get("energy_j"))


def make_replicas(w: InferenceWorkload, blocks: int, per_seq: int = 0) -> list[schedulers.Replica]:
    bs = w.kv_cache.block_size
    if w.scheduler.policy == "disaggregated":
        d = w.disaggregation
        roles = ["prefill"] * d.prefill_replicas + ["decode"] * d.decode_replicas
    else:
        roles = ["both"] * w.replicas
    return [schedulers.Replica(i, PagedKVCache(blocks, bs, per_seq), role)
            for i, role in enumerate(roles)]


def first_token_latency(sc: Scenario, prompt_len: int) -> float:
    """Seconds of one batch-1 prefill of ``prompt_len`` tokens (TRT-LLM's first-token
    latency at batch 1): a single iteration on an idle replica."""
    data = sc.model_dump()
    data["workload"]["requests"] = {"count": 1, "arrival": "burst", "prompt_len": prompt_len,
                                    "output_len": 1}
    res = simulate_inference(Scenario(**data))
    return float(res.requests.ttft_s.iloc[0])


__all__ = ["InferenceResult", "simulate_inference", "first_token_latency"]
