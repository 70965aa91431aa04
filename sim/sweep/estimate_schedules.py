"""Pipeline time of the split-backward schedules (docs/schedules.md), for
``sim/sweep/estimate.py``: each rank's priced order played (below), or, where the play
does not apply, the busiest rank's compute plus the published bubble (``pipe_time``).

Per rank, ``fwd``, ``bwd`` and ``wgrad`` are one microbatch's forward, full backward and
weight-gradient time over all the rank's layers (both chunks of a V or of DualPipe).

* zb-h1 (DualPipe README's ZB1P row): 1F1B's bubble with each stage's F + B - 2W in
  place of F + B;
* zb-v (Qi et al. section 4): the fill of the V, p - 1 chunk forwards (a chunk is half a
  rank's layers), the only idle time of the handcrafted order when F = B = W;
* dualpipe: (p/2 - 1)(F&B + B - 3W) per chunk (half a rank's layers); each microbatch
  visits one of a rank's two chunks, and both end ranks hold an embedding and a head;
* dualpipev: (p - 1)(F&B + B - 3W) per chunk (PP = 2p stages), embedding and head on
  rank 0.
F&B = F + B: the pair runs on one compute stream.

These assume equal ranks. The estimator plays each rank's order instead (``moe_play``,
``dense_play``), pass by pass, under the pipeline's dependencies
(sim/sweep/pipeline_play.py), with MoE DualPipe's F&B the graph's pair block, whose EP
all-to-alls hide behind both chunks' compute (sim/sweep/estimate_moe.py ``pair_time``):
the ranks are unequal (the end ranks hold the embedding and the output layer), and the
others absorb part of the busiest rank's bubble, which the formulas overstate (by up to
8% on Qwen3-30B-A3B, DualPipeV PP 4, 16 microbatches). ``pipe_time`` remains for the
plans the play leaves out (activation or optimizer offload, overlapped parameter
gathers).
"""

from __future__ import annotations

from functools import partial

from sim.costs import shared_rate
from sim.sweep import order_play, pipeline_play
from sim.sweep.step_tail import replicated_grads
from workloads.graph import Collective, CommGroup, Memory
from workloads.parallel import ParallelPlan
from workloads.param_sync import (
    bucket,
    unit_params,
)


def place_heads(plan: ParallelPlan, fwd: list[float], bwd: list[float], lt) -> None:
    """Move or copy the output layer's time, which the straight pipeline puts on the last
    rank: the V shapes hold it on rank 0, DualPipe on both end ranks (and the
    embedding too)."""
    kind, last = plan.effective_schedule, plan.pp - 1
    if plan.pp == 1 or kind not in ("zb-v", "dualpipev", "dualpipe"):
        return
    fwd[0] += lt.head_fwd
    bwd[0] += lt.head_bwd
    if kind == "dualpipe":
        fwd[last] += lt.emb_fwd
        bwd[last] += lt.emb_bwd
    else:
        fwd[last] -= lt.head_fwd
        bwd[last] -= lt.head_bwd


def pipe_time(plan: ParallelPlan, fwd: list[float], bwd: list[float],
              wgrad: list[float]) -> float:
    """Compute of the busiest rank plus the schedule's bubble, in seconds."""
    p, m, kind = plan.pp, plan.microbatches, plan.effective_schedule
    share = 0.5 if kind == "dualpipe" else 1.0      # microbatches each chunk sees
    per = [f + b for f, b in zip(fwd, bwd, strict=True)]
    r = max(range(p), key=lambda i: per[i])
    busy = m * share * per[r]
    f, b, w = fwd[r] / 2, bwd[r] / 2, wgrad[r] / 2   # one chunk of the V / of DualPipe
    if kind == "zb-h1":
        bubble = sum(per[i] - 2 * wgrad[i] for i in range(p) if i != r)
    elif kind == "zb-v":
        bubble = (p - 1) * f
    elif kind == "dualpipe":
        bubble = (p // 2 - 1) * ((f + b) + b - 3 * w)
    else:
        bubble = (p - 1) * ((f + b) + b - 3 * w)
    return busy + max(bubble, 0.0)


def rank_units(pipe, r: int, dual, recv_s: float = 0.0) -> list:
    """Rank ``r``'s order (``pipe.steps``: workloads/schedules_zb.py) as priced units
    ``(seconds, steps)``: each overlapped DualPipe pair at its pair price, every other
    pass (the fill's forwards, the drain's backwards, the split I and W) alone, and
    ``recv_s`` of TP all-gather before a pass (a pair: its forward) fed by another rank.
    ``dual``: the rank's sim.sweep.estimate_moe.DualTimes."""
    by_kind = {"F": dual.fwd, "B": dual.bwd, "I": dual.inp, "W": dual.wgt}
    alone = _alone(pipe, r, lambda c, kind: by_kind[kind][c], recv_s)

    def pair(f, b) -> tuple:
        """A pair with EP transfers is one block after the forward's gather; without,
        two passes, each after its own gather (workloads/training.py ``_merge_pair``)."""
        if dual.merged[(f[1], b[1])]:
            (gf,) = alone[(f[1], f[2])][1]
            return dual.pair[(f[1], b[1])], (gf, 0.0)
        return _passes(alone, f, b)
    return _units(pipe.steps(r), pipe.pairs(r), alone, pair)


def _passes(alone: dict, f, b) -> tuple:
    """A pair's forward ``f`` and backward ``b`` as two passes, each after its own
    gather: (seconds per pass, gathers) from ``alone`` (``_alone``)."""
    (sf,), (gf,) = alone[(f[1], f[2])]
    (sb,), (gb,) = alone[(b[1], b[2])]
    return (sf, sb), (gf, gb)


def _alone(pipe, r: int, price, recv_s: float) -> dict:
    """(chunk, pass) -> ((seconds,), (gather seconds,)) of rank ``r``'s passes:
    ``price(chunk, pass)``, and ``recv_s`` of the receiver's TP all-gather where the
    input comes from another rank (workloads/training.py ``_add_compute``)."""
    out = {}
    for c in range(pipe.v):
        for kind in "FBIW":
            src = pipe.neighbour(r, c, kind)
            fed = recv_s if src is not None and src[0] != r else 0.0
            out[(c, kind)] = ((price(c, kind),), (fed,))
    return out


def _units(steps, pairs, alone: dict, pair) -> list:
    """A rank's steps as units (sim/sweep/pipeline_play.py ``Unit``): each of ``pairs``
    (index of its forward) from ``pair(forward, backward)``, every other step from
    ``alone[(chunk, pass)]``, each giving (seconds, gathers)."""
    if not pairs:
        return [(secs, (s,), pre) for s in steps for secs, pre in (alone[(s[1], s[2])],)]
    starts, units, k = set(pairs), [], 0
    while k < len(steps):
        if k in starts:
            secs, pre = pair(steps[k], steps[k + 1])
            units.append((secs, (steps[k], steps[k + 1]), pre))
            k += 2
            continue
        secs, pre = alone[(steps[k][1], steps[k][2])]
        units.append((secs, (steps[k],), pre))
        k += 1
    return units


def dense_play(plan: ParallelPlan, pipe, lt, hop, recv_s: float,
               streams: list | None = None) -> pipeline_play.Played:
    """A split-backward schedule (zb-h1, zb-v, DualPipe(V)) of a uniform model: each
    rank's order (``pipe.steps``) priced pass by pass from one layer's forward, full
    backward, input- and weight-gradient parts (``lt``, sim.sweep.estimate.LayerTimes)
    times each chunk's layers, the embedding and the output layer with the chunks that
    hold them (workloads/training.py ``make_stage``), a pair as its two passes (no EP
    communication to overlap), and ``recv_s`` of TP all-gather on the compute stream
    before each pass fed by another rank (without sequence parallelism), played under
    the pipeline's dependencies; ``streams``: each rank's DP stream played along
    (``dp_streams``)."""
    units = []
    for r in range(plan.pp):
        def price(c: int, kind: str, r=r, lt=lt) -> float:
            n, first, last = pipe.chunk_layers(r, c), pipe.is_first(r, c), pipe.is_last(r, c)
            emb_f, emb_b = (lt.emb_fwd, lt.emb_bwd) if first else (0.0, 0.0)
            head_f, head_b = (lt.head_fwd, lt.head_bwd) if last else (0.0, 0.0)
            return {"F": emb_f + n * lt.fwd + head_f, "B": head_b + n * lt.bwd + emb_b,
                    "I": head_b + n * lt.bwd_input + emb_b, "W": n * lt.wgrad}[kind]
        alone = _alone(pipe, r, price, recv_s)
        got = _units(pipe.steps(r), pipe.pairs(r), alone, partial(_passes, alone))
        if streams is not None:     # each pass's compute seconds, for its shared rate
            part = _alone(pipe, r, partial(price, lt=lt.compute), recv_s)
            comp = _units(pipe.steps(r), pipe.pairs(r), part, partial(_passes, part))
            got = [(*u, c[0]) for u, c in zip(got, comp, strict=True)]
        units.append(got)
    return pipeline_play.play(pipe, units, hop, streams)


def one_pass_play(plan: ParallelPlan, pipe, lt, hop, recv_s: float,
                  streams: list | None = None,
                  offload: order_play.Offload | None = None) -> pipeline_play.Played:
    """GPipe, 1F1B or interleaved 1F1B of a uniform model, each rank's order played
    (sim/sweep/order_play.py ``play_order``, its structure cached per schedule, ranks,
    chunks and microbatches): each pass priced as in ``dense_play`` (a forward, a full
    backward), ``recv_s`` of TP all-gather before each pass fed by another rank;
    ``streams``: each rank's DP stream played along (``dp_streams``), each chunk's last
    backward then layer by layer (``play_order_shared``); ``offload``: the activation
    copies to and from the host played along (``activation_copies``)."""
    order = order_play.order_of(pipe.kind, pipe.p, pipe.v, pipe.m)
    hops = [hop(src, dst) for src, dst, _ in order.links]
    secs = _pass_prices(plan, pipe, lt)
    if streams is None and offload is None:
        return order_play.play_order(order, secs, hops, recv_s)
    bare = streams is None      # offload without a DP stream beside: none in flight
    if bare:
        streams = [pipeline_play.DPStream([], 1) for _ in range(plan.pp)]
    back = {(r, c): _backward_layers(pipe, lt, r, c) for r in range(plan.pp)
            for c in range(pipe.v)}
    comp = _pass_prices(plan, pipe, lt.compute)
    launched = None
    if plan.zero == 2 and plan.grad_dp > 1:     # every backward launches its buckets
        for (r, c), got in back.items():    # a chunk of no layer: one node, the whole pass
            if not got:
                i = r * 2 * pipe.v + 2 * c + 1
                back[(r, c)] = [(secs[i], comp[i])]
        per = {(r, c): [(w, _rate(streams[r], w, cw), b)
                        for (w, cw), b in zip(got, streams[r].zero2[c], strict=True)]
               for (r, c), got in back.items()}
        launched = {i: per[(r, c)] for i, r, _, c in order.bwd}
    layered = {}
    for r in range(plan.pp):
        key = 0                 # the layers' keys in replicated_grads' order
        for c in reversed(range(pipe.v)):
            layered[order.last_bwd[r][c]] = [(w, cw, ("L", key + j)) for j, (w, cw)
                                             in enumerate(back[(r, c)])]
            key += pipe.chunk_layers(r, c)
    played = order_play.play_order_shared(order, secs, comp, hops, recv_s, streams, layered,
                                             launched, offload)
    if bare:                    # the buckets' queue from the compute's ends (played_end)
        played.free = None
    return played


def moe_one_pass_play(plan: ParallelPlan, pipe, passes: list, hop, recv_s: float,
                      streams: list | None = None) -> tuple[pipeline_play.Played, list]:
    """GPipe, 1F1B or interleaved 1F1B of a MoE / MLA / windowed model, each rank's order
    played from its cached structure as ``one_pass_play``: each pass at the price of the
    graph's block of its chunk (``passes``: per rank, per chunk,
    sim/sweep/estimate_moe.py ``ChunkPasses``), with data-parallel gradients each chunk's
    last backward one node per layer (workloads/training.py ``_split_backward``), each
    layer's end marked on the rank's DP stream (``streams``: its buckets played along,
    ``dp_streams``; else an empty stream that only records the ends). Returns the play
    and, per rank, when each layer of the last backwards ends in ``replicated_grads``'
    order (chunks from the last, layers from the last)."""
    order = order_play.order_of(pipe.kind, pipe.p, pipe.v, pipe.m)
    hops = [hop(src, dst) for src, dst, _ in order.links]
    secs, comp = [], []
    for row in passes:
        for cp in row:
            secs += (cp.fwd[0], cp.bwd[0])
            comp += (cp.fwd[1], cp.bwd[1])
    if plan.grad_dp <= 1:       # no bucket: every backward one block
        return order_play.play_order(order, secs, hops, recv_s), [[] for _ in passes]
    bare = streams is None
    if bare:
        streams = [pipeline_play.DPStream([], 1) for _ in range(plan.pp)]
    layered, keys = {}, []
    for r, row in enumerate(passes):
        key = 0
        for c in reversed(range(pipe.v)):
            nodes = row[c].layers
            layered[order.last_bwd[r][c]] = [(w, cw, ("L", key + j))
                                             for j, (w, cw) in enumerate(nodes)]
            key += len(nodes)
        keys.append(key)
    played = order_play.play_order_shared(order, secs, comp, hops, recv_s, streams, layered)
    ends = [[st.ready[("L", j)] for j in range(n)] for st, n in zip(streams, keys, strict=True)]
    if bare:                    # the buckets' queue from the compute's ends (played_end)
        played.free = None
    return played, ends


def activation_copies(est, pipe, offload) -> order_play.Offload | None:
    """Seconds of each (rank, chunk)'s activation copy to the host after a forward and
    back before a backward (workloads/offload.py ``ActivationOffload``: the offloaded
    share of a layer's activations times the chunk's layers, over the host link); None
    without activation offload."""
    if offload is None or offload.activations <= 0:
        return None
    secs = tuple(est.costs.uncached_time(Memory(kind, offload.activations
                                                * offload.act_bytes_per_layer
                                                * pipe.chunk_layers(r, c)))
                 for kind in ("d2h", "h2d") for r in range(pipe.p) for c in range(pipe.v))
    n = pipe.p * pipe.v
    return order_play.Offload(secs[:n], secs[n:])


def _pass_prices(plan: ParallelPlan, pipe, lt) -> list[float]:
    """Seconds of each (rank, chunk, forward / backward) of a one-pass pipeline, in
    ``order_play.Order``'s price indices, from ``lt`` (times or their compute parts)."""
    secs = []
    for r in range(plan.pp):
        for c in range(pipe.v):
            n, first, last = pipe.chunk_layers(r, c), pipe.is_first(r, c), pipe.is_last(r, c)
            secs += ((lt.emb_fwd if first else 0.0) + n * lt.fwd + (lt.head_fwd if last else 0.0),
                     (lt.head_bwd if last else 0.0) + n * lt.bwd + (lt.emb_bwd if first else 0.0))
    return secs


def _backward_layers(pipe, lt, r: int, c: int) -> list[tuple[float, float]]:
    """(seconds, compute seconds) of each layer node of rank ``r``'s last backward of
    chunk ``c`` in the order they run (workloads/training.py ``_split_backward``: the
    output layer's backward with the first, the embedding's with the last)."""
    n, first, last = pipe.chunk_layers(r, c), pipe.is_first(r, c), pipe.is_last(r, c)
    out = [[lt.bwd, lt.compute.bwd] for _ in range(n)]
    if out and last:
        out[0] = [out[0][0] + lt.head_bwd, out[0][1] + lt.compute.head_bwd]
    if out and first:
        out[-1] = [out[-1][0] + lt.emb_bwd, out[-1][1] + lt.compute.emb_bwd]
    return [tuple(x) for x in out]


def dp_streams(est, plan: ParallelPlan, layerwise: bool = False) -> list | None:
    """Each rank's data-parallel stream to play beside its compute under
    ``sim.nccl_sms`` (sim/sweep/pipeline_play.py ``DPStream``): its replicated gradient
    buckets in the graph's order (``_grad_queue``), each keyed by what completes it: its
    last layer's node of the last backward (``layerwise`` with ``overlap_grad_reduce``:
    GPipe, 1F1B), its chunk (``overlap_grad_reduce`` or ``grad_reduce_per_stage``),
    each holding the SMs of NCCL's kernel on the DP group (sim/setup.py ``comm_sms``);
    under ZeRO-2 (``layerwise``), every microbatch's reduce-scatters (``_zero2_items``),
    played with or without NCCL's SMs priced (then their kernels hold none). None where
    no bucket runs beside the compute: NCCL's SMs not priced, no data parallelism, the
    buckets after the compute (then the closed-form queue is exact)."""
    opts, sms = est.options, est.compute.gpu.sms or 0
    if layerwise and plan.zero == 2 and plan.grad_dp > 1 and est.model.uniform:
        return _zero2_streams(est, plan, sms)
    if (est.costs.comm_sms is None or not sms or plan.grad_dp <= 1
            or not (est.model.uniform or layerwise)
            or not (opts.overlap_grad_reduce or opts.grad_reduce_per_stage)):
        return None
    kind = "reduce_scatter" if plan.zero >= 1 else "all_reduce"
    out = []
    for s in range(plan.pp):
        dp = CommGroup(plan.dp_group(s), "dp")
        ready = replicated_grads(est.model, plan, s, est.params_of(plan, s))
        if layerwise and opts.overlap_grad_reduce:
            ready = [(n, ("L", j)) for j, (n, _) in enumerate(ready)]
        else:
            ready = [(n, ("C", c)) for n, c in ready]
        k = est.costs.comm_sms(Collective(kind, 0.0, dp))
        items = [(key, est._coll(kind, n * opts.grad_bytes, dp), k)
                 for n, key in bucket(ready, opts.bucket_params)]
        out.append(pipeline_play.DPStream(items, sms))
    return out


def _rate(st, w: float, cw: float) -> float:
    """A pass's rate beside one of ``st``'s ZeRO-2 buckets (``DPStream.run``)."""
    if w <= 0 or cw <= 0:
        return 1.0
    return shared_rate(min(1.0, cw / w), st.zero2_sms, st.sms)


def _zero2_streams(est, plan: ParallelPlan, sms: int) -> list:
    """ZeRO-2's DP streams (workloads/param_sync.py ``zero2_reduce_scatter``): after each
    backward of the rank's order, that microbatch's chunk's gradients reduce-scattered in
    buckets over the layers in the order the backward completes them (the embedding with
    the first layer, the untied output layer with the last: ``unit_params`` reversed),
    each as its last layer ends with ``overlap_grad_reduce``, else as the backward ends.
    Each stream carries them per chunk as ``zero2`` (per layer node of the backward, the
    seconds of the buckets it completes) and their kernel's SMs as ``zero2_sms``, for
    ``one_pass_play`` (sim/sweep/order_play.py ``launch_layers``)."""
    opts, pipe = est.options, plan.pipeline(est.model.layers)
    out = []
    for s in range(plan.pp):
        dp = CommGroup(plan.dp_group(s), "dp")
        st = pipeline_play.DPStream([], max(sms, 1))
        st.zero2_sms = est.costs.comm_sms(Collective("reduce_scatter", 0.0, dp)) \
            if est.costs.comm_sms is not None else 0
        st.zero2 = {}
        for c in range(pipe.v):
            ready = list(reversed(unit_params(est.model, plan, s, c)))
            at = [[] for _ in ready]
            for n, j in bucket([(n, j) for j, n in enumerate(ready)], opts.bucket_params):
                at[j if opts.overlap_grad_reduce else -1].append(
                    est._coll("reduce_scatter", n * opts.grad_bytes, dp))
            st.zero2[c] = [tuple(x) for x in at]
        out.append(st)
    return out


def last_backward_layers(plan: ParallelPlan, pipe, lt, played: pipeline_play.Played,
                         s: int) -> list[float]:
    """When each layer of rank ``s``'s last backward of each chunk ends, in the order of
    ``replicated_grads`` (chunks from the last, layers from the last): with data
    parallelism GPipe and 1F1B run that backward one node per layer, the output layer's
    backward with the first, the embedding's with the last (workloads/training.py
    ``_split_backward``), so the gradient buckets go as their layers end."""
    out = []
    for c in reversed(range(pipe.v)):
        n = pipe.chunk_layers(s, c)
        first, last = pipe.is_first(s, c), pipe.is_last(s, c)
        b = (lt.head_bwd if last else 0.0) + n * lt.bwd + (lt.emb_bwd if first else 0.0)
        t = played.grads_done[s][c] - b
        if last:
            t += lt.head_bwd
        for _ in range(n):
            t += lt.bwd
            out.append(t)
        if n and first:
            out[-1] += lt.emb_bwd
    return out


def rank_busy(pipe, r: int, dual) -> float:
    """Seconds of compute of rank ``r`` over the order it plays."""
    return sum(sum(u[0]) if isinstance(u[0], tuple) else u[0]
               for u in rank_units(pipe, r, dual))


def moe_play(plan: ParallelPlan, pipe, dual: list, hop,
             recv_s: float = 0.0) -> pipeline_play.Played:
    """A split-backward schedule of MoE chunks (DualPipe(V) with its pairs, zb-h1, zb-v),
    each rank's priced order played under the pipeline's dependencies
    (sim/sweep/pipeline_play.py): when each rank's compute ends, p2p transfers of
    ``hop(src, dst)`` seconds included."""
    units = [rank_units(pipe, r, dual[r], recv_s) for r in range(plan.pp)]
    return pipeline_play.play(pipe, units, hop)
