"""Prediction band from one play: the recorded schedule re-timed with corner costs.

A played graph fixes, for every node, what it waited for: its dependencies, the node
before it on its stream and, for a collective or a send/recv, the other simulated
members of the rendezvous (sim/engine.py). With those constraints fixed, a node's end
is a max-plus expression of durations::

    ready(n) = max(end(p) for p in deps(n) + [stream predecessor of n])
    end(n)   = max(ready(m) for m in members(n)) + duration(n)

so the iteration time under other durations is one pass over the nodes in the order
they completed (a topological order: the engine records a node only after all of it
predecessors). ``retime`` does that pass. A corner's durations are the played ones
scaled: a transfer's by corner / nominal of its contention-free time, any other node's
by corner / nominal of its cost (the cost itself where nothing else happened in the
play; a block whose all-to-alls ran as flows keeps its contention).

On the analytical network a transfer's time is its contention-free time, so the
re-timed ends equal a full re-play on the corner profile (tests/sim/test_band_retime.py),
but for compute slowed by the SMs of NCCL kernels beside it (``sim.nccl_sms``): its
played slowdown is scaled with it, not re-played (within 0.5% on tests/sim/test_band.py);
under flow fidelity the contention of the nominal play is kept and scaled with the
transfer, instead of being re-simulated (docs/fabric.md gives the difference).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sim.costs import OpCosts
from sim.engine import Engine, Row
from workloads.graph import Collective, ExecutionGraph, Node, SendRecv


class Schedule:
    """The constraints a play recorded: per node its predecessors and rendezvous group."""

    def __init__(self, graph: ExecutionGraph, rows: Sequence[Row]):
        nodes = graph.nodes
        self.order = [r.id for r in rows]
        self.played = [0.0] * len(nodes)          # duration of each node in the play
        for r in rows:
            self.played[r.id] = r.end - r.start
        self.members: dict[int, tuple[int, ...]] = {}
        preds: list[tuple[int, ...]] = [n.deps for n in nodes]
        groups: dict[tuple, list[int]] = {}
        for stream in graph.streams().values():
            seen: dict[tuple, int] = {}
            prev = None
            for node in stream:
                if prev is not None:
                    preds[node.id] = (*preds[node.id], prev.id)
                prev = node
                if isinstance(node.op, Collective | SendRecv):   # a rendezvous (_meeting_key)
                    key = _meeting_key(node)   # k-th use of a key on a stream meets the k-th
                    k = seen[key] = seen.get(key, -1) + 1
                    groups.setdefault((key, k), []).append(node.id)
        for ids in groups.values():
            joined = tuple({p for i in ids for p in preds[i]} - set(ids))
            group = tuple(ids)
            for i in ids:
                self.members[i] = group
                preds[i] = joined
        self.preds = preds
        self._nodes = nodes
        self._transfers: dict[tuple, list[int]] | None = None

    def transfers(self) -> dict[tuple, list[int]]:
        """The rendezvous members (transfers) grouped by what their contention-free time
        depends on, in the order first met (the same for every corner)."""
        if self._transfers is None:
            self._transfers = {}
            for i in self.members:
                self._transfers.setdefault(_ratio_key(self._nodes[i]), []).append(i)
        return self._transfers

    def retime(self, duration: Callable[[int], float]) -> float:
        """Latest end when node i lasts ``duration(i)`` seconds, constraints as played."""
        end = [0.0] * len(self.played)
        fixed = [False] * len(self.played)
        preds, members = self.preds, self.members
        end_of = end.__getitem__
        for i in self.order:
            if fixed[i]:
                continue
            ps = preds[i]
            e = (max(map(end_of, ps)) if ps else 0.0) + duration(i)
            group = members.get(i)
            if group is None:
                end[i] = e
            else:
                for m in group:
                    end[m], fixed[m] = e, True
        return max(end, default=0.0)


def _meeting_key(node: Node) -> tuple | None:
    op = node.op
    if isinstance(op, Collective):
        return Engine._collective_key(node)
    if isinstance(op, SendRecv):
        return Engine._p2p_key(node)
    return None


def transfer_time(network, node: Node) -> float:
    """Contention-free time of a node's collective or send/recv on ``network``."""
    op = node.op
    if isinstance(op, Collective):
        return network.collective_time(op.kind, op.bytes, op.group)
    if op.duration_s is not None:
        return op.duration_s
    src, dst = (node.rank, op.peer) if op.kind == "send" else (op.peer, node.rank)
    return network.p2p_time(src, dst, op.bytes)


def corner_time(schedule: Schedule, graph: ExecutionGraph, costs, network, nominal_net,
                nominal_costs=None) -> float:
    """Iteration time with every transfer's played time scaled by its contention-free time
    on ``network`` over that on ``nominal_net``, and every other node re-costed by
    ``costs``. With ``nominal_costs`` (the play's cost model) a node's played time is
    scaled by costs / nominal_costs instead, which keeps what the play added to the cost
    (a block whose all-to-alls ran as flows, sim.ep_flows)."""
    nodes, played, members = graph.nodes, schedule.played, schedule.members
    dur = [0.0] * len(nodes)                  # each played node's duration at the corner
    for ids in schedule.transfers().values():
        node = nodes[ids[0]]
        base = transfer_time(nominal_net, node)
        r = transfer_time(network, node) / base if base > 0 else 1.0
        for i in ids:
            dur[i] = played[i] * r

    # OpCosts prices a node by its op alone: each op is asked once (graphs repeat their ops).
    by_op = isinstance(costs, OpCosts) and isinstance(nominal_costs, OpCosts | None)
    memo: dict[int, tuple[float, float]] = {}
    for i in schedule.order:
        if i not in members:
            node = nodes[i]
            hit = memo.get(id(node.op)) if by_op else None
            if hit is None:
                hit = (costs.duration(node),
                       0.0 if nominal_costs is None else nominal_costs.duration(node))
                if by_op:
                    memo[id(node.op)] = hit
            corner, base = hit
            dur[i] = played[i] * (corner / base) if base > 0 else corner
    return schedule.retime(dur.__getitem__)


def _ratio_key(node: Node) -> tuple:
    op = node.op
    if isinstance(op, Collective):
        return ("c", op.kind, op.bytes, op.group.ranks)
    return ("p", node.rank, op.peer, op.kind, op.bytes, op.duration_s)
