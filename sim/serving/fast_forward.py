"""Decode runs played in one go: an exact shortcut of the serving loop.

Once a replica has no request waiting and no more can arrive, vLLM's scheduler decodes
every running sequence each iteration, and nothing changes the batch until the first of
them finishes or the paged cache runs out of blocks. For the k - 1 iterations before the
first finish (k = the fewest tokens any running sequence still has to generate), each
iteration's shape is known in advance: B sequences whose cached context grows by B tokens
per iteration. ``decode_run`` applies those k - 1 iterations at once (iteration log rows,
token gaps, generated counts, KV blocks) with the same iteration times, summed in the same
order, as playing them one by one; the k-th iteration, in which sequences finish, goes
through the scheduler as usual. Results are identical (a test compares both paths).
"""

from __future__ import annotations

from workloads.inference.ops import Shape
from workloads.inference.schedulers import Replica

MIN_RUN = 3          # shorter runs are not worth the bookkeeping


def decode_run(loop, rep: Replica, t: float) -> float | None:
    """Advance ``rep`` through its next decode-only iterations; returns the end time of the
    last one, or None when the next iteration must go through the scheduler."""
    running = rep.running
    if rep.waiting or rep.incoming or not running or any(r.in_prefill for r in running):
        return None
    steps = min(r.output - r.generated for r in running) - 1
    if steps < MIN_RUN:
        return None
    kv = rep.kv
    # Blocks each sequence holds after the run (never fewer than it holds now).
    after = [max(r.blocks, kv.blocks_for(r.prompt + r.generated + steps)) for r in running]
    need = sum(after) - sum(r.blocks for r in running)
    if need > kv.free:
        return None
    batch, ctx = len(running), sum(r.context for r in running)
    times, log = [], loop.log.iterations
    host, model = loop.host_per_seq_of(rep) * batch, loop.model_of(rep)
    for _ in range(steps):
        end = t + (model.time(Shape(0, 0, 0, batch, ctx, batch)) + host)
        log.append((rep.index, t, end, 0, batch))
        times.append(end)
        t, ctx = end, ctx + batch
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    kv.used += need                      # what PagedKVCache.grow does, token by token
    kv.peak = max(kv.peak, kv.used)
    first = times[0]
    for r, blocks in zip(running, after, strict=True):
        r.blocks = blocks
        r.tbt.append(first - r.last_token)
        r.tbt.extend(gaps)
        r.generated += steps
        r.last_token = t
    return t
