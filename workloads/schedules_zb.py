"""Pipeline schedules that split the backward: zero-bubble (ZB-H1, ZB-V) and DualPipe(V).

A step is ``(microbatch, chunk, pass)`` as in ``workloads.schedules``, with two more
passes: ``"I"`` computes only the input gradient (the B of Qi et al., ICLR'24, "Zero
Bubble Pipeline Parallelism") and ``"W"`` the weight gradient of an earlier ``"I"``
(queued first-in first-out); ``"B"`` stays the full backward (input and weight).

* ZB-H1 (Qi et al. section 3, the handcrafted schedule with 1F1B's memory): stage s
  runs 1F1B's p - s - 1 warm-up forwards, then F, I pairs, each followed by the W of
  the microbatch s places earlier; the lagging W's fill the cool-down. With free
  communication its bubble is (p - 1)(F + B - 2W), B the full backward (DualPipe
  README's ZB1P row), and every stage holds at most p microbatches' activations.
* DualPipe (DeepSeek-V3 report section 3.2.1; deepseek-ai/DualPipe): rank r holds
  stage r of the microbatches entering at rank 0 (chunk 0) and stage p - 1 - r of those
  entering at rank p - 1 (chunk 1); half the microbatches flow each way. Eight phases:
  nF0, nF0F1, nI1W1F1, the main F0&B1 F1&B0 pairs, nB1 F1&B0, nB1B0 (the latter half
  input-only), nW B0, nW. A forward and a backward of two microbatches run as one
  overlapped pair (their communication hides behind each other's compute), so a pair
  starts when both its inputs have arrived: the bubble is (p/2 - 1)(F&B + B - 3W).
* DualPipeV ("cut-in-half" DualPipe): the model in 2p chunks placed as a V, rank r
  holding chunks r and 2p - 1 - r; every microbatch goes down and back up; the same
  eight phases with p in place of p/2 and all microbatches in both phases.
* ZB-V (Qi et al. section 4, the handcrafted schedule; sail-sg/zero-bubble-pipeline-
  parallelism): the same V placement as DualPipeV, one chunk's F, I and W run back to
  back in the steady phase, at most 2p chunk activations live (1F1B's peak). With
  F = I = W no rank idles between its first and its last pass (the paper's zero
  bubble); the iteration still starts with the (p - 1) F the V takes to reach rank
  p - 1, which every schedule on this placement pays before a synchronous optimizer.
"""

from __future__ import annotations

from workloads.schedules import Step


def zb_h1(m: int, p: int, stage: int) -> list[Step]:
    steps: list[Step] = []
    f = i = w = 0
    for _ in range(min(p - stage - 1, m)):
        steps.append((f, 0, "F"))
        f += 1
    while i < m:
        if f < m:
            steps.append((f, 0, "F"))
            f += 1
        steps.append((i, 0, "I"))
        i += 1
        if i - w > stage:
            steps.append((w, 0, "W"))
            w += 1
    steps += [(k, 0, "W") for k in range(w, m)]
    return steps


class _Dual:
    """The eight phases of DualPipe / DualPipeV on one rank, recording overlapped pairs."""

    def __init__(self, m: int, p: int, rank: int, v_shape: bool):
        if v_shape:
            self.halves, self.h, self.per_dir = p, rank, m
            self.chunk = {0: 0, 1: 1}
            self.mbs = {0: range(m), 1: range(m)}
        else:
            self.halves, self.h, self.per_dir = p // 2, min(rank, p - 1 - rank), m // 2
            near = 0 if rank < p // 2 else 1          # the direction entering nearer this rank
            self.chunk = {0: near, 1: 1 - near}
            self.mbs = {0: range(m // 2), 1: range(m // 2, m)}
        self.nf = {0: 0, 1: 0}
        self.nb = {0: 0, 1: 0}
        self.queue: list[tuple[int, int]] = []
        self.steps: list[Step] = []
        self.pairs: list[int] = []

    def f(self, phase: int) -> None:
        c = self.chunk[phase]
        self.steps.append((self.mbs[c][self.nf[phase]], c, "F"))
        self.nf[phase] += 1

    def b(self, phase: int, split: bool = False) -> None:
        c = self.chunk[phase]
        mb = self.mbs[c][self.nb[phase]]
        self.nb[phase] += 1
        self.steps.append((mb, c, "I" if split else "B"))
        if split:
            self.queue.append((mb, c))

    def w(self) -> None:
        mb, c = self.queue.pop(0)
        self.steps.append((mb, c, "W"))

    def pair(self, fwd: int, bwd: int) -> None:
        self.pairs.append(len(self.steps))
        self.f(fwd)
        self.b(bwd)

    def run(self) -> tuple[list[Step], list[int]]:
        hs, h = self.halves, self.h
        for _ in range((hs - h - 1) * 2):
            self.f(0)
        for _ in range(h + 1):
            self.f(0)
            self.f(1)
        for _ in range(hs - h - 1):
            self.b(1, split=True)
            self.w()
            self.f(1)
        for _ in range(self.per_dir - 2 * hs + h + 1):
            self.pair(0, 1)
            self.pair(1, 0)
        for _ in range(hs - h - 1):
            self.b(1)
            self.pair(1, 0)
        self._drain(h + 1)
        for _ in range(hs - h - 1):
            self.w()
            self.b(0, split=True)
        for _ in range(h + 1):
            self.w()
        return self.steps, self.pairs

    def _drain(self, n: int) -> None:
        """nB1B0: the second half of these backwards leave their W for later."""
        split = False
        for i in range(n):
            if i == n // 2 and self.h % 2 == 1:
                split = True
            self.b(1, split)
            if i == n // 2 and self.h % 2 == 0:
                split = True
            self.b(0, split)


def dualpipe(m: int, p: int, rank: int, v_shape: bool = False) -> tuple[list[Step], list[int]]:
    """(steps, pairs): ``pairs`` holds k where steps k (a forward) and k + 1 (a backward of
    another microbatch) form one overlapped F&B unit."""
    return _Dual(m, p, rank, v_shape).run()


def v_stage(p: int, rank: int, chunk: int) -> int:
    """Position in the V of chunk 0 / 1 of a rank: r going down, 2p - 1 - r coming back."""
    return rank if chunk == 0 else 2 * p - 1 - rank


def zb_v(m: int, p: int) -> list[list[Step]]:
    """Steps of every rank of Qi et al.'s handcrafted ZB-V (section 4, Fig. 8)."""
    return [_zb_v_rank(m, p, r) for r in range(p)]


def _zb_v_rank(m: int, p: int, r: int) -> list[Step]:
    """Rank r's ZB-V order. Chunk 0 is the V's way down (stage r), chunk 1 the way back
    (stage 2p - 1 - r, the loss on rank 0). The order is laid out for n = max(m, 2p - 1)
    microbatches (the fewest that fill the V); steps of microbatches past m are dropped.

    * warm-up: 2(p - r) - 1 chunk-0 forwards, r pairs (F1, F0), then p - r triples
      (F1, I1, W1): rank r has 2p chunk activations live at most, 1F1B's p stages;
    * steady: (F0, I0, W0, F1, I1, W1), the forward left out once chunk 0 is done;
    * cool-down: r pairs (I0, I1) leaving their W for later, p - r pairs (I0, W0), then
      the pending W's (chunk 1 first).
    With F = I = W every rank runs without a gap from its first pass to its last.
    """
    n = max(m, 2 * p - 1)
    done = {"F": [0, 0], "I": [0, 0], "W": [0, 0]}
    out: list[Step] = []

    def put(*passes: tuple[str, int]) -> None:
        for kind, c in passes:
            out.append((done[kind][c], c, kind))
            done[kind][c] += 1

    put(*[("F", 0)] * (2 * (p - r) - 1))
    for _ in range(r):
        put(("F", 1), ("F", 0))
    for _ in range(p - r):
        put(("F", 1), ("I", 1), ("W", 1))
    while done["F"][1] < n:
        if done["F"][0] < n:
            put(("F", 0))
        put(("I", 0), ("W", 0), ("F", 1), ("I", 1), ("W", 1))
    for _ in range(r):
        put(("I", 0), ("I", 1))
    for _ in range(p - r):
        put(("I", 0), ("W", 0))
    for c in (1, 0):
        put(*[("W", c)] * (done["I"][c] - done["W"][c]))
    return [s for s in out if s[0] < m]
