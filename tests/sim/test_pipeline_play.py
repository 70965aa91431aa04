"""sim/sweep/pipeline_play.py: the pipeline's step orders played as a list schedule, with
ranks of unequal speed, against timelines worked out by hand and the published bubble."""

import pytest

from sim.sweep import order_play, pipeline_play
from workloads.pipeline import Pipeline


def _units(pipe: Pipeline, price: list[dict]) -> list[list]:
    """Each rank's order as units: a pair at price["P"], every other pass at its own."""
    out = []
    for r in range(pipe.p):
        steps, pairs = pipe.steps(r), set(pipe.pairs(r))
        units, k = [], 0
        while k < len(steps):
            if k in pairs:
                units.append((price[r]["P"], (steps[k], steps[k + 1])))
                k += 2
                continue
            units.append((price[r][steps[k][2]], (steps[k],)))
            k += 1
        out.append(units)
    return out


def test_1f1b_two_unequal_ranks_by_hand():
    """1F1B, 2 ranks, 2 microbatches; rank 0: F 1, B 2; rank 1: F 3, B 4; 0.5 per hop.
    Rank 0 runs F0 F1 B0 B1, rank 1 F0 B0 F1 B1:
    r0 F0 0-1, F1 1-2; r1 F0 1.5-4.5 (arrives 1 + 0.5), B0 4.5-8.5, F1 8.5-11.5
    (arrived at 2.5), B1 11.5-15.5; r0 B0 9-11 (8.5 + 0.5), B1 16-18 (15.5 + 0.5)."""
    pipe = Pipeline("1f1b", 2, 1, 2, 4)
    played = pipeline_play.play(pipe, _units(pipe, [{"F": 1, "B": 2}, {"F": 3, "B": 4}]),
                                lambda src, dst: 0.5)
    assert played.end == [18.0, 15.5]
    assert played.grads_done == [[18.0], [15.5]]


def test_dualpipev_unequal_ranks_by_hand():
    """DualPipeV, 2 ranks, 4 microbatches, free transfers; rank 0 (embedding and output
    layer) F 2, B 3, I 2, W 1, F&B pair 5; rank 1 F 1, B 2, I 1, W 1, pair 3.
    a: chunk 0 (stages 0 and 1), b: chunk 1 (stage 2 on rank 1, the loss's stage 3 on
    rank 0). Rank 0: F0a 0-2, F1a 2-4, F2a 4-6, F0b 6-8 (rank 1's at 4), I0b 8-10,
    W0b 10-11, F1b 11-13, F3a+B1b 13-18, F2b+B0a 18-23 (rank 1's at 16), B2b 23-26,
    F3b+B1a 26-31 (24), B3b 31-34, I2a 34-36 (30), W2a 36-37, I3a 37-39 (36), W3a 39-40.
    Rank 1: F0a 2-3, F0b 3-4, F1a 4-5, F1b 5-6, F2a+B0b 10-13 (I0b at 10),
    F2b+B0a 13-16, F3a+B1b 18-21, F3b+B1a 21-24, B2b 26-28, B2a 28-30, I3b 34-35,
    I3a 35-36, W3b 36-37, W3a 37-38.
    Rank 0 never idles: 40, its compute; the published bubble (p - 1)(F&B + B - 3W)
    = 5 with rank 0's passes would give 45."""
    pipe = Pipeline("dualpipev", 2, 2, 4, 8)
    price = [{"F": 2, "B": 3, "I": 2, "W": 1, "P": 5}, {"F": 1, "B": 2, "I": 1, "W": 1, "P": 3}]
    units = _units(pipe, price)
    played = pipeline_play.play(pipe, units, lambda src, dst: 0.0)
    assert played.end == [40.0, 38.0]
    assert played.grads_done == [[40.0, 34.0], [38.0, 37.0]]
    assert sum(secs for secs, _ in units[0]) == 40.0


@pytest.mark.parametrize("kind", ["dualpipe", "dualpipev"])
@pytest.mark.parametrize("p,per", [(2, 2), (4, 2), (4, 5), (8, 4)])
@pytest.mark.parametrize("f,b,i,w", [(1.0, 2.0, 1.0, 1.0), (1.0, 3.0, 2.0, 1.0)])
def test_equal_ranks_give_the_published_bubble(kind, p, per, f, b, i, w):
    """Equal ranks, free transfers, B = I + W, F&B = F + B: the makespan is one rank's
    compute plus the published bubble, (PP/2 - 1)(F&B + B - 3W) for DualPipe and
    (PP - 1)(F&B + B - 3W) for DualPipeV (DeepSeek-V3 report Table 2; DualPipe README),
    PP the ranks."""
    m = per * p
    pipe = Pipeline(kind, p, 2, m, 4 * p)
    units = _units(pipe, [{"F": f, "B": b, "I": i, "W": w, "P": f + b}] * p)
    busy = sum(secs for secs, _ in units[0])
    halves = p // 2 if kind == "dualpipe" else p
    played = pipeline_play.play(pipe, units, lambda src, dst: 0.0)
    assert max(played.end) == pytest.approx(busy + (halves - 1) * ((f + b) + b - 3 * w))


def test_orders_that_wait_on_each_other_are_refused():
    """Rank 0 asking for microbatch 0's gradient before sending its activation."""
    pipe = Pipeline("1f1b", 2, 1, 1, 4)
    units = [[(1.0, ((0, 0, "B"),)), (1.0, ((0, 0, "F"),))], [(1.0, ((0, 0, "F"),)),
                                                              (1.0, ((0, 0, "B"),))]]
    with pytest.raises(ValueError, match="wait on each other"):
        pipeline_play.play(pipe, units, lambda src, dst: 0.0)


@pytest.mark.parametrize("block", [False, True])
def test_gathers_and_passes_one_after_the_other_by_hand(block):
    """The 1F1B case above with a TP all-gather of 0.25 before every received pass, and
    rank 1's B0 and F1 as one unit: two passes one after the other (an unmerged DualPipe
    pair), or one block of 7 (a merged pair: both end with it).
    r0 F0 0-1, F1 1-2; r1 gather 1.5-1.75, F0 1.75-4.75; then
    * passes: B0 4.75-8.75 (F1 arrived at 2.5), gather 8.75-9, F1 9-12, B1 12-16; r0
      B0's input at 9.25, gather -9.5, B0 -11.5; B1's at 16.5, gather -16.75, B1 -18.75;
    * block: B0 and F1 4.75-11.75 (F1's gather 0 in a merged pair), B1 11.75-15.75; r0
      B0's input at 12.25, gather, B0 12.5-14.5; B1's at 16.25, B1 16.5-18.5."""
    pipe = Pipeline("1f1b", 2, 1, 2, 4)
    g = 0.25
    r0 = [((1.0,), ((0, 0, "F"),)), ((1.0,), ((1, 0, "F"),)),
          ((2.0,), ((0, 0, "B"),), (g,)), ((2.0,), ((1, 0, "B"),), (g,))]
    pair = (7.0, ((0, 0, "B"), (1, 0, "F")), (0.0, 0.0)) if block else \
        ((4.0, 3.0), ((0, 0, "B"), (1, 0, "F")), (0.0, g))
    r1 = [((3.0,), ((0, 0, "F"),), (g,)), pair, ((4.0,), ((1, 0, "B"),))]
    played = pipeline_play.play(pipe, [r0, r1], lambda src, dst: 0.5)
    assert played.end == ([18.5, 15.75] if block else [18.75, 16.0])


@pytest.mark.parametrize("kind,p,v,m", [("1f1b", 2, 1, 2), ("1f1b", 4, 1, 8), ("1f1b", 4, 1, 3),
                                        ("gpipe", 3, 1, 5), ("interleaved", 2, 2, 4),
                                        ("interleaved", 4, 3, 8), ("interleaved", 3, 2, 6)])
def test_cached_order_plays_as_the_list_schedule(kind, p, v, m):
    """``play_order`` (the structure cached per schedule and sizes, one recurrence over
    it) gives exactly ``play``'s times for GPipe, 1F1B and interleaved orders: ranks of
    unequal speed, a hop that differs per link and direction, a TP all-gather before
    every pass received from another rank."""
    import random
    rnd = random.Random(7)
    pipe = Pipeline(kind, p, v, m, p * v)
    secs = [rnd.uniform(0.5, 3.0) for _ in range(p * 2 * v)]
    g = 0.125
    hops = {(a, b): rnd.uniform(0.0, 2.0) for a in range(p) for b in range(p)}
    units = [[((secs[r * 2 * v + 2 * c + (kind_ != "F")],), ((mb, c, kind_),),
               (g if pipe.neighbour(r, c, kind_) is not None else 0.0,))
              for mb, c, kind_ in pipe.steps(r)] for r in range(p)]
    want = pipeline_play.play(pipe, units, lambda a, b: hops[(a, b)])
    order = order_play.order_of(kind, p, v, m)
    got = order_play.play_order(order, secs, [hops[(a, b)] for a, b, _ in order.links], g)
    assert got.end == want.end
    assert got.grads_done == want.grads_done


def test_cached_order_1f1b_two_unequal_ranks_by_hand():
    """The two-rank 1F1B timeline worked out by hand above (rank 0: F 1, B 2; rank 1:
    F 3, B 4; 0.5 per hop), from the cached order: rank 0 ends at 18, rank 1 at 15.5."""
    order = order_play.order_of("1f1b", 2, 1, 2)
    assert order.links == ((0, 1, False), (1, 0, True))
    played = order_play.play_order(order, [1.0, 2.0, 3.0, 4.0], [0.5, 0.5], 0.0)
    assert played.end == [18.0, 15.5]
    assert played.grads_done == [[18.0], [15.5]]


def test_dp_stream_slows_the_passes_beside_its_buckets_by_hand():
    """A rank's DP stream on a GPU of 100 SMs (sim/engine.py's rule: a pass of compute
    share f runs at 1 - f N / S while a kernel of N SMs is in flight). Buckets of 1 s and
    2 s holding 20 SMs, the first launched when chunk 0 is complete (at 2), the second
    keyed on chunk 1 (at 1) but after the first: 2-3, 3-5. A pass of 4 s of compute from
    0: 2 s alone, then at 0.8: ends 4.5. A pass of 10 s, half compute (rate 0.9), from 0:
    2 alone, 3 s at 0.9 (2.7), 5.3 left alone: ends 10.3."""
    st = pipeline_play.DPStream([(("C", 0), 1.0, 20), (("C", 1), 2.0, 20)], 100)
    st.mark(("C", 1), 1.0)
    assert st.spans == [] and st.free == 0.0
    st.mark(("C", 0), 2.0)
    assert st.spans == [(2.0, 3.0, 20), (3.0, 5.0, 20)] and st.free == 5.0
    assert st.run(0.0, 4.0, 4.0) == pytest.approx(4.5)
    assert st.run(0.0, 10.0, 5.0) == pytest.approx(10.3)
    assert st.run(0.0, 1.5, 1.5) == 1.5                   # done before the first bucket
    assert st.run(0.0, 10.0, 0.0) == 10.0                 # no compute: not slowed


def test_play_order_shared_by_hand():
    """The 1F1B timeline of ``test_1f1b_two_unequal_ranks_by_hand`` with each rank's last
    backward as two layers of half its time, all compute, and on rank 1 a bucket of 1 s
    holding 50 of 100 SMs launched as its first layer ends: r1 B1 11.5-13.5 (first
    layer), the bucket 13.5-14.5, the second layer 1 s at half speed (0.5 done) then
    1.5 alone: ends 16.0, so r0's B1 runs 16.5-18.5. Without buckets: play_order's."""
    order = order_play.order_of("1f1b", 2, 1, 2)
    secs, hops = [1.0, 2.0, 3.0, 4.0], [0.5] * len(order.links)
    layers = {order.last_bwd[0][0]: [(1.0, 1.0, ("L", 0)), (1.0, 1.0, ("L", 1))],
              order.last_bwd[1][0]: [(2.0, 2.0, ("L", 0)), (2.0, 2.0, ("L", 1))]}

    def streams(items):
        return [pipeline_play.DPStream([], 100), pipeline_play.DPStream(items, 100)]
    plain = order_play.play_order_shared(order, secs, secs, hops, 0.0, streams([]), layers)
    assert plain.end == order_play.play_order(order, secs, hops, 0.0).end == [18.0, 15.5]
    got = order_play.play_order_shared(order, secs, secs, hops, 0.0,
                                          streams([(("L", 0), 1.0, 50)]), layers)
    assert got.end == pytest.approx([18.5, 16.0])
    assert got.free == pytest.approx([0.0, 14.5])
