"""Closed-form iteration time of a training plan, for ranking thousands of plans fast.

It prices the very same per-layer kernels and collectives the DES plays
(workloads.layers through sim.costs.OpCosts, the same ComputeModel and network closed
forms), so the two agree on every op; only the schedule is summarised by a formula
instead of being played event by event:

* pipeline (1F1B / GPipe, Narayanan et al. SC'21 section 2.2): with per-stage forward +
  backward time ``S_s`` of one microbatch, ``T = m * max S + (sum S - max S) / v`` (the
  bubble ``(p - 1)`` stage-times shrinks by the interleaving factor ``v``), plus the
  pipeline fill and drain crossing ``p - 1`` stage boundaries each way; a uniform
  model's GPipe / 1F1B / interleaved pipeline under ZeRO 0-2 (activation offload
  included; no optimizer offload, no overlapped gathers, no blocking sends) and the
  split-backward schedules are played rank by rank
  instead (sim/sweep/estimate_schedules.py, sim/sweep/pipeline_play.py), exact where the
  ranks are unequal, and so are MoE / MLA / windowed models' GPipe / 1F1B / interleaved
  pipelines under ZeRO 0/1 without host offload (``moe_one_pass_play``);
* data parallel: gradient buckets overlap the last microbatch's backward (Megatron-LM
  ``overlap_grad_reduce``); what does not fit under it, the embedding sync, the optimizer
  step and the ZeRO-1/2 parameter all-gather are exposed at the end, per stage;
* ZeRO-2 reduce-scatters every microbatch's buckets (played where the pipeline is;
  elsewhere, beyond the last, what a microbatch's buckets take over its stage time is
  exposed);
* ZeRO-3 without pipeline parallelism (the ZeRO-3 plans sweeps keep): the graph
  builder's own nodes of the step played as the engine plays them
  (sim/sweep/zero3_play.py); with pipelining (only ``simulate`` runs it) the formula:
  a layer's forward takes max(compute, gather), its backward max(compute, gather +
  reduce-scatter); the step's first gather and last reduce-scatter are exposed.

Per-layer times depend only on (tp, micro_batch, sp, recompute), so they are cached: a
sweep of thousands of plans prices a few dozen distinct layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache, partial

from hw_models.compute import ComputeModel
from sim.costs import OpCosts
from sim.network import AnalyticalNetwork, ClusterLayout
from sim.setup import comm_sms, host_launch, paced_compute
from sim.sweep import estimate_schedules, step_tail
from workloads import memory
from workloads.graph import CommGroup, Overlap
from workloads.model import ModelSpec
from workloads.offload import OffloadOptions
from workloads.parallel import ParallelPlan
from workloads.param_sync import (
    adam_bytes,
    adam_shard,
    copy_grad_params,
    copy_pair,
    gathers_overlap,
    grad_reduce_kind,
    optimizer_ops,
    stage_params,
    tied_sync_params,
    unit_params,
)
from workloads.pipeline import SPLIT_BACKWARD
from workloads.training import TrainingOptions, p2p_bytes, stage_layer_ops

GIB = 2**30


@dataclass(frozen=True)
class LayerTimes:
    fwd: float          # one layer, one microbatch
    bwd: float          # recompute + backward
    emb_fwd: float
    emb_bwd: float
    head_fwd: float
    head_bwd: float
    wgrad: float = 0.0  # the weight-gradient part of bwd (split-backward schedules)
    bwd_input: float = 0.0  # recompute + the input-gradient part ("I")
    # the same times' compute-kernel parts (a block's "compute" category): the share of
    # each pass that NCCL's data-parallel kernels slow (sim/engine.py, ``sim.nccl_sms``)
    compute: LayerTimes | None = None


class Estimator:
    """Prices plans of one model on one cluster (system, nodes, network, profile)."""

    def __init__(self, model: ModelSpec, layout: ClusterLayout, compute: ComputeModel,
                 options: TrainingOptions, hbm_bytes: float, profile, host=None):
        gb_s = layout.system.gpu_spec.host_gb_s
        host_bw = gb_s * 1e9 if gb_s else 25e9
        self.model, self.layout, self.options = model, layout, options
        self.hbm_gib = hbm_bytes / GIB
        self.network = AnalyticalNetwork(layout, profile)
        self.costs = OpCosts(compute, self.network, host_bw, host)
        self.compute = compute
        self.layer_times = lru_cache(maxsize=None)(self._layer_times)
        self._stage_ops = lru_cache(maxsize=None)(
            lambda key: stage_layer_ops(self.model, key, self.options, 0)[1])
        self.zero3_shapes: dict = {}    # sim/sweep/zero3_play.py, per plan shape
        self.params_of = lru_cache(maxsize=4096)(partial(stage_params, model))

    def _block_parts(self, ops) -> dict[str, float]:
        """Seconds per category of ``ops`` run as one block, as the engine prices a Block
        (sim.costs)."""
        # Uncached on purpose: OpCosts caches by id(), which a transient op would reuse.
        times = [self.costs.uncached_time(op) for op in ops]
        return self.costs.block_parts(ops, times)

    def _layer_times(self, plan: ParallelPlan) -> LayerTimes:
        """Per-layer times of the plan's layer shape (the same ops the graph builder uses:
        context parallelism, FP8 recipe, TP overlap included), with their compute parts."""
        ops = stage_layer_ops(self.model, plan, self.options, 0)[1]
        parts = {name: self._block_parts(getattr(ops, attr)) for name, attr in (
            ("fwd", "fwd"), ("bwd", "bwd"), ("emb_fwd", "emb_fwd"), ("emb_bwd", "emb_bwd"),
            ("head_fwd", "head_fwd"), ("head_bwd", "head_bwd"), ("wgrad", "bwd_weight"),
            ("bwd_input", "bwd_input"))}
        return LayerTimes(**{k: sum(v.values()) for k, v in parts.items()},
                          compute=LayerTimes(**{k: v.get("compute", 0.0)
                                                for k, v in parts.items()}))

    def _times(self, plan: ParallelPlan) -> LayerTimes:
        return self.layer_times(_layer_key(plan))

    def stage_ops(self, plan: ParallelPlan):
        """The per-layer ops of the plan's layer shape (training.stage_layer_ops), cached."""
        return self._stage_ops(_layer_key(plan))

    def block_parts(self, block) -> dict[str, float]:
        """Seconds per category of a Block node, as the engine prices it."""
        return self._block_parts(block.ops) if not block.overlap else self.costs.block_parts(
            block.ops, [self.costs.uncached_time(op) for op in block.ops], block.overlap)

    def memory_peak_gib(self, plan: ParallelPlan, offload: OffloadOptions | None = None) -> float:
        flash = self.options.attention == "flash"
        stages = {0, plan.pp - 1} if plan.pipeline_layers is None else range(plan.pp)
        # With equal stages the first stage holds the most in-flight activations and the
        # embedding; the last holds the logits: the peak is on one of the two.
        return max(memory.stage_memory(self.model, plan, s, self.options.grad_bytes, flash,
                                       param_bytes=self.options.param_bytes,
                                       offload=offload,
                                       optimizer_kind=self.options.optimizer,
                                       moment_bytes=self.options.adam_moment_bytes).total
                   for s in stages) / GIB

    def _offload_time(self, plan: ParallelPlan, offload: OffloadOptions | None, bwd_layer: float,
                      layers: int) -> tuple[float, float]:
        """(exposed reload time over the pipeline, optimizer-on-host time): a chunk's
        reload hides behind the backward before it (one step of prefetch)."""
        if offload is None:
            return 0.0, 0.0
        host_bw = self.costs.host_bw
        chunk = layers / plan.vpp
        reload = offload.activations * offload.act_bytes_per_layer * chunk / host_bw
        exposed = plan.microbatches * plan.vpp * max(0.0, reload - chunk * bwd_layer)
        return exposed, 0.0

    def iteration_time(self, plan: ParallelPlan, offload: OffloadOptions | None = None) -> float:
        p, v, m = plan.pp, plan.vpp, plan.microbatches
        if self.model.uniform:
            lt = self._times(plan)
            layers = plan.stage_layers(self.model.layers)
            fwd = [n * lt.fwd for n in layers]
            bwd = [n * lt.bwd for n in layers]
            fwd[0] += lt.emb_fwd
            bwd[0] += lt.emb_bwd
            fwd[-1] += lt.head_fwd
            bwd[-1] += lt.head_bwd
            estimate_schedules.place_heads(plan, fwd, bwd, lt)
            wgrad = [n * lt.wgrad for n in layers]
            layer_bwd = [lt.bwd] * p
        else:                       # MoE / MLA / windowed layers: sim/sweep/estimate_moe.py
            from sim.sweep import estimate_moe
            if self._plays_one_pass(plan, offload, moe=True):
                passes: list = []
                estimate_moe.stage_times(self, plan, passes=passes)
                played, ends = estimate_schedules.moe_one_pass_play(
                    plan, plan.pipeline(self.model.layers), passes, self._hops(plan),
                    self._recv_gather(plan), estimate_schedules.dp_streams(self, plan, True))
                return step_tail.played_end(self, plan, played,
                                                     lambda s: ends[s] or None)
            dual = [] if plan.effective_schedule in SPLIT_BACKWARD and p > 1 else None
            fwd, bwd, layer_bwd, split = estimate_moe.stage_times(self, plan, dual)
            bwd, drain = estimate_moe.split_backward(plan, bwd, split)
            wgrad = [0.0] * p           # not split: the split schedules' bubble from above
            lt = None
        zero3 = plan.zero >= 3 and plan.dp > 1
        if self._plays_zero3(plan, offload):
            from sim.sweep import zero3_play
            return zero3_play.step_time(self, plan, offload)
        played = None
        if lt is None and dual and not zero3:      # MoE split schedules: the orders played
            played = estimate_schedules.moe_play(plan, plan.pipeline(self.model.layers), dual,
                                                 self._hops(plan), self._recv_gather(plan))
        elif self._plays_split(plan, zero3, offload):
            played = estimate_schedules.dense_play(plan, plan.pipeline(self.model.layers), lt,
                                                   self._hops(plan), self._recv_gather(plan),
                                                   estimate_schedules.dp_streams(self, plan))
        elif self._plays_one_pass(plan, offload):
            pipe = plan.pipeline(self.model.layers)
            played = estimate_schedules.one_pass_play(
                plan, pipe, lt, self._hops(plan), self._recv_gather(plan),
                estimate_schedules.dp_streams(self, plan, layerwise=True),
                estimate_schedules.activation_copies(self, pipe, offload))
            return step_tail.played_end(self, plan, played, partial(
                estimate_schedules.last_backward_layers, plan, pipe, lt, played))
        if played is not None:      # each rank's tail (ZeRO 0/1) as the graph plays it
            return step_tail.played_end(self, plan, played)
        if zero3:
            fwd, bwd = zip(*(self._zero3_stage(plan, s, fwd[s], bwd[s], lt) for s in range(p)),
                           strict=True)
        per_stage = [f + b + v * self._p2p_on_compute(plan) for f, b in zip(fwd, bwd, strict=True)]
        worst = max(per_stage)
        if plan.effective_schedule in SPLIT_BACKWARD:
            t_pipe = estimate_schedules.pipe_time(plan, list(fwd), list(bwd), wgrad)
        else:
            t_pipe = m * worst + (sum(per_stage) - worst) / v
        if lt is not None:
            t_pipe += self._offload_time(plan, offload, lt.bwd, max(layers))[0]
        else:
            t_pipe += drain
        if p > 1:
            hop = self.network.p2p_time(plan.rank(0, 0, 0), plan.rank(0, 0, 1),
                                        p2p_bytes(self.model, plan))
            t_pipe += 2 * (plan.pipeline(self.model.layers).stages - 1) * hop
        # Stage s finishes its last backward about s chunk-backwards before stage 0.
        tail = max(self._stage_tail(plan, s, bwd[s] / v, layer_bwd[s], per_stage[s] * m - fwd[s] / v,
                                    offload, fwd[s])
                   + (0.0 if lt else estimate_moe.expert_tail(self, plan, s)) - s * bwd[s] / v
                   for s in sorted({0, p // 2, p - 1}))
        return t_pipe + max(tail, 0.0)

    def _plays_split(self, plan: ParallelPlan, zero3: bool, offload) -> bool:
        """Whether a uniform model's split-backward schedule is played rank by rank
        (estimate_schedules.dense_play): not under ZeRO-3, activation or optimizer offload,
        or the parameter gathers overlapping the first forwards, which the play leaves out."""
        return (self.model.uniform and plan.pp > 1 and plan.effective_schedule in SPLIT_BACKWARD
                and not zero3 and not _offloads(offload)
                and not gathers_overlap(self.model, plan, self.options))

    def _plays_zero3(self, plan: ParallelPlan, offload) -> bool:
        """Whether a ZeRO-3 step is played node by node (sim/sweep/zero3_play.py): without
        pipeline parallelism (the only ZeRO-3 plans sweeps keep) and with data-parallel
        gradients, a MoE / MLA / windowed model's layers each with its own kernels; host
        offload played along."""
        return plan.zero3_passes and plan.pp == 1

    def _plays_one_pass(self, plan: ParallelPlan, offload, moe: bool = False) -> bool:
        """Whether a uniform model's GPipe, 1F1B or interleaved pipeline (PP 1 included: its
        microbatches one after the other, the last backward's buckets layer by layer) is
        played rank by rank (estimate_schedules.one_pass_play): ZeRO 0-2, activation
        offload played along, no optimizer offload, no overlapped parameter gathers, no
        blocking sends. ``moe``: the same for a MoE / MLA / windowed model
        (``estimate_schedules.moe_one_pass_play``) under ZeRO 0/1 and no host offload."""
        if moe:
            return (plan.effective_schedule in ("gpipe", "1f1b", "interleaved")
                    and plan.zero <= 1 and not _offloads(offload)
                    and not self.options.p2p_blocking)
        return (self.model.uniform
                and plan.effective_schedule in ("gpipe", "1f1b", "interleaved")
                and plan.zero <= 2 and not (offload is not None and offload.optimizer)
                and not self.options.p2p_blocking
                and not gathers_overlap(self.model, plan, self.options))

    def _recv_gather(self, plan: ParallelPlan) -> float:
        """The receiver's TP all-gather of a scattered pipeline input without sequence
        parallelism (workloads/pipeline_sync.py ``gather_received``), per received pass."""
        if plan.tp == 1 or plan.sp:
            return 0.0
        return self._coll("all_gather", p2p_bytes(self.model, plan) * plan.tp,
                          CommGroup(plan.tp_group(0), "pp"))

    def _hops(self, plan: ParallelPlan):
        """Seconds of one pipeline transfer from stage ``src``'s rank to ``dst``'s."""
        nbytes, memo = p2p_bytes(self.model, plan), {}

        def hop(src: int, dst: int) -> float:
            t = memo.get((src, dst))
            if t is None:
                t = memo[(src, dst)] = self.network.p2p_time(
                    plan.rank(0, 0, src), plan.rank(0, 0, dst), nbytes)
            return t
        return hop

    def _p2p_on_compute(self, plan: ParallelPlan) -> float:
        """Pipeline transfer time on a stage's compute stream per chunk and microbatch
        (workloads/pipeline_sync.py): the receiver's TP all-gather of its forward and
        backward inputs without sequence parallelism, and with ``p2p_blocking`` the
        sender's wait for its two sends."""
        if plan.pp == 1:
            return 0.0
        nbytes, t = p2p_bytes(self.model, plan), 0.0
        if plan.tp > 1 and not plan.sp:
            t += 2 * self._coll("all_gather", nbytes * plan.tp, CommGroup(plan.tp_group(0), "pp"))
        if self.options.p2p_blocking:
            t += 2 * self.network.p2p_time(plan.rank(0, 0, 0), plan.rank(0, 0, 1), nbytes)
        return t

    def _zero3_stage(self, plan: ParallelPlan, s: int, fwd: float, bwd: float,
                     lt: LayerTimes) -> tuple[float, float]:
        """One microbatch's forward and backward on stage s under ZeRO-3: every layer waits
        for its gather (issued one layer ahead) and, in the backward, shares the DP channel
        with the previous layer's reduce-scatter."""
        group = CommGroup(plan.dp_group(s), "dp")
        units = [u for c in range(plan.vpp) for u in unit_params(self.model, plan, s, c)]
        n = len(units)
        f_extra, b_extra = fwd - n * lt.fwd, bwd - n * lt.bwd     # embedding / head
        ag = [self._coll("all_gather", u * self.options.param_bytes, group) for u in units]
        rs = [self._coll("reduce_scatter", u * self.options.grad_bytes, group) for u in units]
        f = f_extra + sum(max(lt.fwd, a) for a in ag)
        b = b_extra + sum(max(lt.bwd, a + r) for a, r in zip(ag, rs, strict=True))
        return f, b

    def _coll(self, kind: str, nbytes: float, group: CommGroup) -> float:
        return self._coll_cache(kind, nbytes, group.ranks)

    @lru_cache(maxsize=4096)  # noqa: B019 - one estimator per sweep point, kept for its life
    def _coll_cache(self, kind: str, nbytes: float, ranks: tuple[int, ...]) -> float:
        return self.network.collective_time(kind, nbytes, CommGroup(ranks, "dp"))

    def _stage_tail(self, plan: ParallelPlan, s: int, last_bwd: float, layer_bwd: float,
                    busy: float, offload: OffloadOptions | None = None,
                    stage_fwd: float = 0.0) -> float:
        """Exposed time after stage s's last backward: DP gradient buckets not hidden under
        it (for ZeRO-2, the queue of every microbatch's buckets: m of them behind the
        ``busy`` compute from the first backward on), tied-embedding sync, DualPipe's sum
        of the two parameter copies' gradients (``param_sync.add_copy_grad_sync``),
        optimizer step (MoE: the graph's, over the replicated shard and the rank's experts
        per expert-DP), ZeRO-1/2 parameter all-gather, ZeRO-3's first gather and last
        reduce-scatter."""
        params = stage_params(self.model, plan, s)
        opts = self.options
        group = CommGroup(plan.dp_group(s), "dp")
        t = 0.0
        if plan.dp > 1 and plan.zero >= 3:
            units = unit_params(self.model, plan, s, 0)
            t += self._coll("all_gather", units[0] * opts.param_bytes, group)
            t += self._coll("reduce_scatter", units[0] * opts.grad_bytes, group)
        elif plan.dp > 1:
            kind = grad_reduce_kind(plan, opts)
            n_buckets = max(1, math.ceil(params / opts.bucket_params))
            bucket = self.network.collective_time(kind, params / n_buckets * opts.grad_bytes, group)
            total = n_buckets * bucket
            hidden = last_bwd - layer_bwd if opts.overlap_grad_reduce else 0.0
            queue = plan.microbatches * total - busy if plan.zero == 2 else 0.0
            t += max(total - hidden, bucket, queue)
        ends = plan.tied_pair(self.model.tied_embeddings)
        if ends and s in ends:
            pair = CommGroup(tuple(plan.rank(0, 0, e) for e in ends), "dp")
            t += self.network.collective_time(
                "all_reduce", tied_sync_params(self.model, plan) * opts.grad_bytes, pair)
        mirror = copy_pair(plan, s)     # DualPipe: the two copies' gradients summed
        if mirror is not None:
            t += self._coll("all_reduce", copy_grad_params(self.model, plan, s) * opts.grad_bytes,
                            mirror)
        if offload is not None and offload.optimizer:   # grads down, CPU Adam, params up
            shard = adam_shard(self.model, plan, s, params)
            t += shard * (opts.grad_bytes + opts.param_bytes) / self.costs.host_bw
            t += shard * adam_bytes(opts) / offload.host_adam_bw
        elif not self.model.uniform or opts.optimizer == "muon":   # MoE: the graph's step,
            t += sum(self.costs.uncached_time(op)                # over both parts; Muon's
                     for op in optimizer_ops(self.model, plan, s, opts, params))
        else:
            shard = plan.optimizer_shard(params)
            t += self.compute.time("optimizer", 0.0, shard * adam_bytes(opts), "fp32")
        if plan.zero in (1, 2) and plan.grad_dp > 1:
            ag = self.network.collective_time("all_gather", params * opts.param_bytes, group)
            if opts.overlap_param_gather:   # beside the first forward, layer by layer, and
                layers = max(1, plan.stage_layers(self.model.layers)[s])   # its s-hop wait
                ag = max(0.0, Overlap((), (), layers).time(stage_fwd, ag) - stage_fwd
                         - s * stage_fwd / plan.vpp)
            t += ag
        return t


def from_setup(setup) -> Estimator:
    """An estimator for the cluster and model of a resolved scenario (sim.setup.Setup)."""
    sc = setup.scenario
    compute = paced_compute(setup.gpu, setup.profile, sc.sim.speed_scale,
                               setup.layout.world_size)
    est = Estimator(setup.model, setup.layout, compute, setup.options, setup.gpu.hbm_bytes,
                    setup.profile, host_launch(sc, setup.system))
    est.costs.comm_sms = comm_sms(setup)     # NCCL's CTAs beside the blocks' compute
    return est


def _layer_key(plan: ParallelPlan) -> ParallelPlan:
    """The plan reduced to what a layer's ops depend on (tp, micro-batch, sp, recompute,
    cp, TP overlap ...): the cache key of per-layer times and ops."""
    from dataclasses import replace
    return replace(plan, dp=1, pp=1, global_batch=plan.micro_batch, vpp=1, zero=0,
                   pipeline_layers=None, schedule="1f1b", embedding_in_split=False,
                   loss_in_split=False, zero_shard_group=None)


def _offloads(offload: OffloadOptions | None) -> bool:
    """Whether the plan moves activations or the optimizer step to the host."""
    return offload is not None and (offload.activations > 0 or offload.optimizer)
