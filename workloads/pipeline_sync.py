"""Megatron's pipeline transfers on the compute stream: blocking sends (the sender's
compute waits for its transfer) and the receiver's TP all-gather of a scattered input.

Megatron-LM's pipeline communication of 2021 (megatron/p2p_communication.py, the code of
the SC'21 paper) posts each exchange with ``torch.distributed.batch_isend_irecv``, waits on
every request and then calls ``torch.cuda.synchronize()`` "to protect against race
condition when using batch_isend_irecv()": the stage computes nothing until its send has
completed. Megatron-Core keeps it as ``batch_p2p_sync``. Modelled by putting each send on
the sender's compute stream right after the pass that produced it, so the next pass
starts after the transfer; the receives keep their own streams (a pass already waits for
its input). Without it (the default) sends run on their own streams beside compute.
"""

from __future__ import annotations

from collections.abc import Callable

from workloads.graph import Collective, CommGroup, ExecutionGraph, SendRecv

GATHER_SEQ = 3 * 10**6      # apart from the DP and FSDP collectives' sequence numbers


class BlockingSends:
    """The receives each (stage, microbatch, chunk, pass) feeds, and which are sent."""

    def __init__(self, recv: dict, neighbour: Callable[[int, int, str], tuple[int, int]]):
        self.feeds: dict[tuple, list[int]] = {}
        for (s, mb, c, step), rid in recv.items():
            src_stage, src_chunk = neighbour(s, c, step)
            self.feeds.setdefault((src_stage, mb, src_chunk, step), []).append(rid)
        self.sent: set[int] = set()

    def after(self, g: ExecutionGraph, stage: int, rank: int, key: tuple, node: int) -> None:
        """Sends of the pass ``key`` = (mb, chunk, step) that ended with ``node``, on the
        compute stream."""
        mb, c, step = key
        for rid in self.feeds.get((stage, mb, c, step), ()):
            op = g.nodes[rid].op
            g.add(rank, "compute", SendRecv("send", g.nodes[rid].rank, op.bytes, op.tag),
                  (node,), "pp", f"send_{step}{mb}_c{c}", mb=mb, chunk=c)
            self.sent.add(rid)


def gather_received(g: ExecutionGraph, plan, rank: int, tp_ranks: tuple[int, ...], recv_id: int,
                    key: tuple) -> int:
    """Megatron's scatter-gather optimisation (SC'21 section 4.1; ``p2p_bytes`` sends 1/t
    of the activation from each TP rank): without sequence parallelism the receiving
    stage all-gathers the pieces over NVLink before the pass that uses them (Megatron's
    ``gather_split_1d_tensor``, on the compute stream). Returns the gather's node."""
    mb, c, step = key
    op = g.nodes[recv_id].op
    gather = Collective("all_gather", op.bytes * plan.tp, CommGroup(tp_ranks, "pp"),
                        seq=GATHER_SEQ + op.tag, name="p2p_gather")
    return g.add(rank, "compute", gather, (recv_id,), "pp", f"gather_{step}{mb}_c{c}",
                 mb=mb, chunk=c)
