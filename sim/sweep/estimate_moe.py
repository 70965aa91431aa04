"""Closed-form stage times of MoE / MLA / windowed models for the sweep estimator.

The same kernels the DES plays (workloads.moe_layers, one list per kind of layer: dense
or MoE, full or windowed attention), built and rewritten by the graph builder's own
``stage_layer_ops`` (layer options, FP8 recipe, context parallelism, TP overlap), each
kind priced once, and a chunk of layers priced as the graph's block of it
(workloads/training.py, one block per chunk and pass, embedding and output layer with
their chunk) by the engine's own ``OpCosts.price`` of the layers' joined tallies: the
wait for the host's launches across the chunk's host syncs, and, when
``workload.moe.overlap`` is set, the EP communication hidden behind the rest of the chunk
(DeepEP's SMs and its kernels' slowdown beside compute included) are the engine's.
Expert gradients reduced over expert-data-parallel add to the stage's tail. Under the
split-backward schedules (zb-h1, zb-v, DualPipe(V)) each stage also gets its passes per
chunk and the price of each overlapped forward&backward pair (``DualTimes``), from sums
taken layer by layer, for the play of each rank's order (sim/sweep/estimate_schedules.py).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from functools import reduce

from sim.costs import BlockTally, OpCosts
from workloads import moe as spec
from workloads import moe_parallel, moe_training
from workloads.graph import CommGroup
from workloads.moe_layers import layer_forward_at
from workloads.parallel import ParallelPlan
from workloads.param_sync import bucket, pipeline_of
from workloads.pipeline import SPLIT_BACKWARD
from workloads.stage_ops import pair_overlap, split_ep, split_wgrad
from workloads.training import stage_layer_ops


def _tally(costs: OpCosts, ops, overlap: tuple[str, ...]) -> BlockTally:
    # Uncached on purpose: OpCosts caches by id(), which a transient op would reuse.
    return costs.tally(ops, [costs.uncached_time(op) for op in ops], overlap)


def _time(costs: OpCosts, tallies: list[BlockTally], overlap: tuple[str, ...]) -> float:
    """Seconds of the tallied runs of ops run back to back as one block (sim.costs)."""
    return sum(costs.price(reduce(operator.add, tallies), overlap).values())


def _timed(costs: OpCosts, tallies: list[BlockTally], overlap: tuple[str, ...]) -> tuple:
    """(seconds, compute seconds) of ``_time``'s block: its compute part is what NCCL's
    data-parallel kernels slow (sim/engine.py ``_shared``)."""
    parts = costs.price(reduce(operator.add, tallies), overlap)
    return sum(parts.values()), parts.get("compute", 0.0)


@dataclass
class ChunkPasses:
    """One chunk's passes as the graph's blocks, for the play of one-pass pipelines
    (sim/sweep/estimate_schedules.py ``moe_one_pass_play``): (seconds, compute seconds)
    of its forward and its backward, and of each layer node of its backward run one
    node per layer (workloads/training.py ``_split_backward``, in the order they run:
    the output layer's backward with the first, the embedding's with the last)."""
    fwd: tuple[float, float]
    bwd: tuple[float, float]
    layers: list[tuple[float, float]]


@dataclass
class _Share:
    """What a DualPipe pair's price needs of a run of ops, summed (additive over layers):
    seconds of the ops other than EP collectives, the EP collectives and their seconds,
    and the host's seconds to issue them all (stage_ops.pair_block, OpCosts.overlap_tally)."""
    main: float = 0.0
    ep: tuple = ()
    ep_s: float = 0.0
    host: float = 0.0

    def __add__(self, other: _Share) -> _Share:
        return _Share(self.main + other.main, self.ep + other.ep, self.ep_s + other.ep_s,
                      self.host + other.host)


def _share(costs: OpCosts, ops) -> _Share:
    rest, ep = split_ep(ops)
    host = costs.host.issue_s(ops) if costs.host is not None else 0.0
    return _Share(sum(costs.uncached_time(o) for o in rest), ep,
                  sum(costs.uncached_time(o) for o in ep), host)


def pair_time(costs: OpCosts, fwd: _Share, bwd: _Share, alone: float) -> float:
    """Seconds of one DualPipe pair (a chunk's forward beside another microbatch's
    backward) as the engine prices the graph's pair block: the EP transfers of both run
    beside the rest of both, one step per transfer (workloads/stage_ops.py ``pair_block``);
    ``alone`` (the two passes one after the other) when neither has EP communication."""
    both = fwd + bwd
    if not both.ep:
        return alone
    tally = costs.overlap_tally(pair_overlap((), both.ep), both.main, both.ep_s, both.host)
    return sum(costs.price(tally).values())


@dataclass
class DualTimes:
    """One stage's passes under DualPipe(V), per chunk: forward, full backward, input-
    and weight-gradient parts, and the pair of a chunk's forward with a chunk's backward
    ((forward chunk, backward chunk) -> seconds)."""
    fwd: list[float] = field(default_factory=list)
    bwd: list[float] = field(default_factory=list)
    inp: list[float] = field(default_factory=list)
    wgt: list[float] = field(default_factory=list)
    pair: dict = field(default_factory=dict)
    merged: dict = field(default_factory=dict)  # (forward, backward chunk) -> one block?


def stage_times(est, plan: ParallelPlan, dual: list | None = None,
                passes: list | None = None) -> tuple[list[float], ...]:
    """(forward, backward, mean backward of one layer, backward as one block per layer)
    per stage, one microbatch: each chunk's forward and backward priced as the graph's
    block of it; the last is the graph's backward that lets gradient buckets start as its
    layers finish (workloads/training.py ``_split_backward``: the output layer's backward
    with the chunk's last layer, the embedding's with its first). With ``dual`` (a list),
    each stage's ``DualTimes`` are appended to it."""
    model, opts, costs = est.model, est.options, est.costs
    overlap = ("ep",) if opts.moe and opts.moe.overlap else ()
    pipe = pipeline_of(plan, model.layers)
    fwd, bwd, per_layer, split = [], [], [], []
    for s in range(plan.pp):
        ctx, ops = stage_layer_ops(model, plan, opts, s)
        kinds: dict[tuple, tuple] = {}
        f = b = b_split = 0.0
        layer_b = []
        stage_dual = DualTimes() if dual is not None else None
        stage_passes = [] if passes is not None else None
        shares: dict = {}
        for c in range(plan.chunks):
            cf, cb, alone = [], [], []
            keys = []
            for i in moe_training.chunk_layers(model, plan, s, c):
                key = spec.layer_kind(model, i)
                if key not in kinds:    # one layer's kernels, rewritten as the graph's chunks
                    fo = ops.transform(layer_forward_at(ctx, i))
                    bo = ops.transform(moe_training.layer_bwd_ops(ctx, plan, i), True)
                    lb = _tally(costs, bo, overlap)
                    kinds[key] = (_tally(costs, fo, overlap), lb, _time(costs, [lb], overlap),
                                  fo, bo, _timed(costs, [lb], overlap)[1])
                cf.append(kinds[key][0])
                cb.insert(0, kinds[key][1])         # the backward runs the last layer first
                alone.insert(0, kinds[key][2])      # each layer's backward as its own block
                keys.append(key)
            layer_b += alone
            nodes = [(a, kinds[k][5]) for a, k in zip(alone, reversed(keys), strict=True)]
            cf, cb = _with_ends(costs, ops, overlap, (pipe.is_first(s, c), pipe.is_last(s, c)),
                                cf, cb, nodes)
            # the split backward's first and last blocks differ from the layers alone
            ends = [n[0] - a for n, a in zip(nodes, alone, strict=True)]
            if stage_passes is not None:
                stage_passes.append(ChunkPasses(_timed(costs, cf, overlap),
                                                _timed(costs, cb, overlap), nodes))
                chunk_f, chunk_b = stage_passes[-1].fwd[0], stage_passes[-1].bwd[0]
            else:
                chunk_f, chunk_b = _time(costs, cf, overlap), _time(costs, cb, overlap)
            f, b = f + chunk_f, b + chunk_b
            b_split += sum(alone) + sum(ends) if alone else chunk_b
            if stage_dual is not None:
                stage_dual.fwd.append(chunk_f)
                stage_dual.bwd.append(chunk_b)
                _dual_chunk(costs, ops, (pipe.is_first(s, c), pipe.is_last(s, c)),
                            [(k, kinds[k]) for k in keys], overlap, stage_dual, shares)
        if stage_dual is not None:
            n = plan.chunks
            stage_dual.pair = {(x, y): pair_time(costs, shares[("f", x)], shares[("b", y)],
                                                 stage_dual.fwd[x] + stage_dual.bwd[y])
                               for x in range(n) for y in range(n)}
            stage_dual.merged = {(x, y): bool(shares[("f", x)].ep or shares[("b", y)].ep)
                                 for x in range(n) for y in range(n)}
            dual.append(stage_dual)
        if passes is not None:
            passes.append(stage_passes)
        per_layer.append(sum(layer_b) / max(1, len(layer_b)))
        fwd.append(f)
        bwd.append(b)
        split.append(b_split)
    return fwd, bwd, per_layer, split


def _with_ends(costs: OpCosts, ops, overlap, ends: tuple[bool, bool], cf: list, cb: list,
               nodes: list) -> tuple[list, list]:
    """A chunk's forward and backward tallies ``cf``, ``cb`` with the embedding (``ends[0]``:
    the model's first chunk) and the output layer (``ends[1]``: its last), and ``nodes``
    (each layer node of the backward run one node per layer, (seconds, compute seconds))
    updated in place where those join the first or last node (workloads/training.py
    ``_split_backward``)."""
    n = len(nodes)
    if ends[0]:
        emb_b = _tally(costs, ops.emb_bwd, overlap)
        cf, cb = [_tally(costs, ops.emb_fwd, overlap), *cf], [*cb, emb_b]
        if n:
            nodes[-1] = _timed(costs, [cb[-2], emb_b], overlap)
    if ends[1]:
        head_b = _tally(costs, ops.head_bwd, overlap)
        cf, cb = [*cf, _tally(costs, ops.head_fwd, overlap)], [head_b, *cb]
        if n:
            tail = [cb[-1]] if n == 1 and ends[0] else []
            nodes[0] = _timed(costs, [head_b, cb[1], *tail], overlap)
    return cf, cb


def _dual_chunk(costs: OpCosts, ops, ends: tuple[bool, bool], layers: list, overlap,
                out: DualTimes, shares: dict) -> None:
    """One chunk's input- and weight-gradient passes (the graph's ``inp`` and ``w``
    blocks: the output layer's and embedding's backward with the input part) and the
    pair shares of its forward and backward (``shares[("f" / "b", chunk)]``), each kind
    of layer split once (``shares[key]``)."""
    c = len(out.inp)
    emb_f, emb_b = (ops.emb_fwd, ops.emb_bwd) if ends[0] else ((), ())
    head_f, head_b = (ops.head_fwd, ops.head_bwd) if ends[1] else ((), ())
    fs, bs = _share(costs, emb_f), _share(costs, head_b)
    inp, wgt = [_tally(costs, head_b, overlap)], []
    for key, kind in reversed(layers):          # the backward runs the last layer first
        if key not in shares:
            i_ops, w_ops = split_wgrad(kind[4])
            shares[key] = (_share(costs, kind[3]), _share(costs, kind[4]),
                           _tally(costs, i_ops, overlap), _tally(costs, w_ops, overlap))
        bs += shares[key][1]
        inp.append(shares[key][2])
        wgt.append(shares[key][3])
    for key, _ in layers:
        fs += shares[key][0]
    shares[("f", c)] = fs + _share(costs, head_f)
    shares[("b", c)] = bs + _share(costs, emb_b)
    inp.append(_tally(costs, emb_b, overlap))
    out.inp.append(_time(costs, inp, overlap))
    out.wgt.append(_time(costs, wgt, overlap) if wgt else 0.0)


def split_backward(plan: ParallelPlan, bwd: list[float],
                   split: list[float]) -> tuple[list[float], float]:
    """(backward per stage, extra time of the drain) where the graph plays backwards one
    block per layer (workloads/training.py ``_add_step``): under ZeRO-2 every microbatch's,
    else, with data-parallel gradients, the last microbatch's, which crosses every stage
    in the pipeline's drain, so its extra time over the chunk blocks adds once per stage."""
    if plan.grad_dp <= 1 or plan.zero >= 3 or plan.effective_schedule in SPLIT_BACKWARD:
        return bwd, 0.0
    if plan.zero == 2:
        return split, 0.0
    return bwd, sum(x - b for x, b in zip(split, bwd, strict=True))


def expert_tail(est, plan: ParallelPlan, s: int) -> float:
    """Expert gradients over expert-DP (not hidden: the graph queues them behind the
    replicated buckets on the DP channel), in the graph's buckets
    (moe_training.add_expert_grad_sync), and their parameter all-gather."""
    size = moe_parallel.edp(plan)
    experts = moe_training.stage_split(est.model, plan, s)[1]
    if size <= 1 or experts <= 0:
        return 0.0
    group = CommGroup(moe_parallel.edp_group(plan, s), "dp")
    kind = "reduce_scatter" if plan.zero >= 1 else "all_reduce"
    ready = [(e, None) for _, grads in moe_training.expert_grads(est.model, plan, s)
             for e in grads if e > 0]
    t = sum(est._coll(kind, n * est.options.grad_bytes, group)     # equal buckets: one price
            for n, _ in bucket(ready, est.options.bucket_params))
    if plan.zero == 1:
        t += est.network.collective_time("all_gather", experts * est.options.param_bytes, group)
    return t
