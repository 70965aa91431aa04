"""Pipeline schedules: the order of (microbatch, chunk, pass) on one stage.

GPipe: all forwards, then all backwards. 1F1B (PipeDream-Flush, Narayanan et al. SC'21
Fig. 4 top): p - s - 1 warm-up forwards, then one forward / one backward, then the
cool-down backwards. Interleaved 1F1B (SC'21 Fig. 4 bottom, Megatron-LM's
``forward_backward_pipelining_with_interleaving``): microbatches in groups of p per
model chunk, with (p - s - 1) * 2 + (v - 1) * p warm-up forwards.
"""

from __future__ import annotations

Step = tuple[int, int, str]   # (microbatch, chunk, "F" | "B")


def gpipe(m: int) -> list[Step]:
    return [(i, 0, "F") for i in range(m)] + [(i, 0, "B") for i in range(m)]


def one_f_one_b(m: int, p: int, stage: int) -> list[Step]:
    warm = min(p - stage - 1, m)
    steps: list[Step] = [(i, 0, "F") for i in range(warm)]
    f, b = warm, 0
    while f < m:
        steps += [(f, 0, "F"), (b, 0, "B")]
        f, b = f + 1, b + 1
    steps += [(i, 0, "B") for i in range(b, m)]
    return steps


def _virtual(k: int, p: int, v: int, forward: bool) -> tuple[int, int]:
    """Microbatch and chunk of the k-th forward (or backward) on a stage."""
    group, pos = divmod(k, p * v)
    chunk = pos // p
    if not forward:
        chunk = v - 1 - chunk
    return group * p + pos % p, chunk


def interleaved(m: int, p: int, v: int, stage: int) -> list[Step]:
    total = m * v
    warm = min((p - stage - 1) * 2 + (v - 1) * p, total)
    steps: list[Step] = []
    for k in range(warm):
        steps.append((*_virtual(k, p, v, True), "F"))
    f, b = warm, 0
    while f < total:
        steps.append((*_virtual(f, p, v, True), "F"))
        steps.append((*_virtual(b, p, v, False), "B"))
        f, b = f + 1, b + 1
    for k in range(b, total):
        steps.append((*_virtual(k, p, v, False), "B"))
    return steps


def schedule(kind: str, m: int, p: int, v: int, stage: int) -> list[Step]:
    if kind == "gpipe":
        return gpipe(m)
    if kind == "interleaved":
        return interleaved(m, p, v, stage)
    return one_f_one_b(m, p, stage)
