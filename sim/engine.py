"""SimPy executor of an ExecutionGraph. No hardware or ML knowledge lives here.

One process per (rank, stream) walks that stream's nodes in program order: wait for
the node's dependencies, rendezvous with the other simulated participants of a
collective or a send/recv pair, then hold for the cost. Every node appends one row
(ready, start, end) to the timeline.

SM sharing (``comm_sms``, ``gpu_sms``): a collective on a side stream (not ``compute``)
holds the SMs its kernel's CTAs occupy on its rank from its launch to its end; while it
does, the compute stream's kernels of that rank run on the others: a node whose compute
share of its time is f progresses at 1 - f k / S with k SMs held of the GPU's S.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import simpy

from sim.block_flows import play_block, plays
from sim.costs import shared_rate
from sim.progress import Quiet, progress
from workloads.graph import Block, Collective, Compute, ExecutionGraph, Node, SendRecv


class CostModel(Protocol):
    def duration(self, node: Node) -> float: ...
    def parts(self, node: Node) -> dict[str, float]: ...


class Network(Protocol):
    def collective(self, env: simpy.Environment, op: Collective) -> Generator: ...
    def p2p(self, env: simpy.Environment, src: int, dst: int, nbytes: float) -> Generator: ...


@dataclass
class _Meeting:
    """Rendezvous of the simulated members of one collective or one send/recv pair."""
    expected: int
    done: simpy.Event
    arrived: int = 0
    start: float = 0.0


@dataclass(slots=True)
class Row:
    id: int
    rank: int
    stream: str
    name: str
    category: str
    ready: float
    start: float
    end: float
    parts: dict[str, float] | None = None
    meta: dict = field(default_factory=dict)


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """CPython's cyclic garbage collector paused for the block, then restored as it was
    (reference counting still frees memory as usual). A step allocates some 10^5 objects
    that live until its end (graph nodes, timeline rows, events): the collector would
    scan them again and again, and ~10% of a 1k-GPU step went to that; the few cycles
    a step leaves are collected once it is back on."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


PROGRESS_EVERY = 4095            # ops between progress-bar updates, minus one (a bit mask)
BIG_GRAPH = 50_000               # graphs below this finish in well under 2 s: no bar


class Engine:
    def __init__(self, graph: ExecutionGraph, costs: CostModel, network: Network,
                 play: tuple[str, ...] = (), comm_sms: Callable[[Collective], int] | None = None,
                 gpu_sms: int = 0):
        """``play``: collective dimensions whose collectives inside blocks run as transfers
        on the network (sim/block_flows.py) instead of their closed-form time.
        ``comm_sms``: SMs a side-stream collective's kernel holds on a GPU of ``gpu_sms``
        SMs (module docstring); None or no ``gpu_sms``: compute never shares the GPU."""
        self.play = play
        self._comm_sms = comm_sms if comm_sms is not None and gpu_sms > 0 else None
        self._gpu_sms = gpu_sms
        self._held: dict[int, int] = {}          # rank -> SMs held by side-stream kernels
        self._running: dict[int, object] = {}    # rank -> compute process holding now
        self._side_cat: dict[int, str] = {}      # rank -> category of its last holder
        self.env = simpy.Environment()
        self.graph, self.costs, self.network = graph, costs, network
        self.done = [self.env.event() for _ in graph.nodes]
        self.rows: list[Row] = []
        self._meetings: dict[tuple, _Meeting] = {}
        sim = graph.simulated_ranks
        self._simulated = set(sim) if sim is not None else set(graph.ranks)
        self._members: dict[tuple[int, ...], int] = {}
        self._events = 0
        self._bar = Quiet()
        self._block_plans: dict[int, tuple] = {}
        self._played: dict[int, bool] = {}       # id(op) -> plays(op, play); ops live in graph

    def run(self) -> list[Row]:
        for nodes in self.graph.streams().values():
            self.env.process(self._stream(nodes))
        n = len(self.graph.nodes)
        with progress(total=n, desc="simulate", unit="op", quiet=n < BIG_GRAPH) as self._bar:
            self.env.run()
            self._bar.update(len(self.rows) - self._bar.n)
        unfinished = sum(1 for ev in self.done if not ev.triggered)
        if unfinished:
            raise RuntimeError(f"deadlock: {unfinished} nodes never ran (unmatched send/recv "
                               "or collective?)")
        return self.rows

    @property
    def events(self) -> int:
        """Simulation events processed: node completions plus the waits they yielded on."""
        return self._events

    def _stream(self, nodes: list[Node]) -> Generator:
        env, done, rows, costs = self.env, self.done, self.rows, self.costs
        for node in nodes:
            for d in node.deps:
                ev = done[d]
                if ev.callbacks is not None:          # not processed yet (Event.processed)
                    self._events += 1
                    yield ev
            ready = env.now
            op = node.op
            parts = None
            if isinstance(op, Collective):
                start = yield from self._collective(node)
            elif isinstance(op, SendRecv):
                start = yield from self._meet(self._p2p_key(node), self._p2p_members(node), node)
            else:
                start = ready
                if self.play and self._plays(op):
                    parts = yield from play_block(env, op, costs, self.network, self.play,
                                                  self._block_plans)
                    self._events += 1
                else:
                    parts = yield from self._run(node)
            rows.append(Row(node.id, node.rank, node.stream, node.name, node.category,
                            ready, start, env.now, parts, node.meta))
            done[node.id].succeed()
            self._events += 1
            if not len(rows) & PROGRESS_EVERY:
                self._bar.update(PROGRESS_EVERY + 1)

    def _collective(self, node: Node) -> Generator:
        """Meet the collective's other members and run it; on a side stream its kernel
        holds its CTAs' SMs of the rank from its launch (waiting for the others
        included) to its end. Returns the start of the transfer."""
        op = node.op
        k = (self._comm_sms(op) if self._comm_sms is not None and node.stream != "compute"
             else 0)
        if k:
            self._side_cat[node.rank] = node.category
            self._hold(node.rank, k)
        start = yield from self._meet(self._collective_key(node), self._n_members(op), node)
        if k:
            self._hold(node.rank, -k)
        return start

    def _hold(self, rank: int, k: int) -> None:
        """A side-stream kernel takes (k > 0) or frees (k < 0) k SMs of ``rank``; the
        compute node running there, if any, is woken to go on at its new rate."""
        self._held[rank] = self._held.get(rank, 0) + k
        proc = self._running.get(rank)
        if proc is not None:
            proc.interrupt()

    def _run(self, node: Node) -> Generator:
        """Hold for the node's cost; returns its parts: a block's categories, and the time
        its compute lost to side-stream collectives' SMs in their category."""
        env, costs = self.env, self.costs
        dur, start = costs.duration(node), env.now
        if dur > 0:
            self._events += 1
            if self._comm_sms is not None and node.stream == "compute":
                yield from self._shared(node, dur)
            else:
                yield env.timeout(dur)
        parts = costs.parts(node) if isinstance(node.op, Block) else None
        extra = env.now - start - dur
        if extra > 1e-12 * dur:
            parts = dict(parts) if parts else {node.category: dur}
            cat = self._side_cat.get(node.rank, "dp")
            parts[cat] = parts.get(cat, 0.0) + extra
        return parts

    def _shared(self, node: Node, dur: float) -> Generator:
        """Run a compute-stream node of ``dur`` seconds alone, at 1 - f k / S of its speed
        while side-stream kernels hold k of the S SMs (f: its compute share)."""
        env, rank = self.env, node.rank
        left, frac = dur, None
        while left > 0:
            k = self._held.get(rank, 0)
            if k and frac is None:
                frac = self._compute_frac(node, dur)
            rate = shared_rate(frac or 0.0, k, self._gpu_sms)
            t0 = env.now
            self._running[rank] = env.active_process
            try:
                yield env.timeout(left / rate)
                left = 0.0
            except simpy.Interrupt:
                left = max(0.0, left - (env.now - t0) * rate)
            finally:
                self._running.pop(rank, None)

    def _compute_frac(self, node: Node, dur: float) -> float:
        """Share of ``node``'s time spent in compute kernels: all of a Compute op, a
        block's compute part, nothing of a delay or a copy."""
        op = node.op
        if isinstance(op, Block):
            return min(1.0, self.costs.parts(node).get("compute", 0.0) / dur)
        return 1.0 if isinstance(op, Compute) else 0.0

    def _plays(self, op) -> bool:
        """Whether the block ``op`` plays collectives on the network (memoised per op)."""
        hit = self._played.get(id(op))
        if hit is None:
            hit = self._played[id(op)] = plays(op, self.play)
        return hit

    def _meet(self, key: tuple, expected: int, node: Node) -> Generator:
        """Wait for all simulated members; the last to arrive runs the transfer for all."""
        meeting = self._meetings.get(key)
        if meeting is None:
            meeting = self._meetings[key] = _Meeting(expected, self.env.event())
        meeting.arrived += 1
        if meeting.arrived == expected:
            del self._meetings[key]
            meeting.start = self.env.now
            op = node.op
            if isinstance(op, Collective):
                yield from self.network.collective(self.env, op)
            elif op.duration_s is not None:
                yield self.env.timeout(op.duration_s)
            else:                                  # key: ("p2p", src, dst, tag)
                yield from self.network.p2p(self.env, key[1], key[2], op.bytes)
            meeting.done.succeed()
        else:
            yield meeting.done
        return meeting.start

    def _n_members(self, op: Collective) -> int:
        n = self._members.get(op.group.ranks)
        if n is None:
            n = self._members[op.group.ranks] = max(
                1, sum(1 for r in op.group.ranks if r in self._simulated))
        return n

    @staticmethod
    def _collective_key(node: Node) -> tuple:
        op = node.op
        return ("coll", op.kind, op.group.ranks, op.seq)

    def _p2p_members(self, node: Node) -> int:
        return 2 if node.op.peer in self._simulated else 1

    @staticmethod
    def _p2p_key(node: Node) -> tuple:
        op = node.op
        src, dst = (node.rank, op.peer) if op.kind == "send" else (op.peer, node.rank)
        return ("p2p", src, dst, op.tag)
