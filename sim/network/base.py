"""The interface every network model implements (analytical and flow-level alike).

Closed-form queries (``collective_time``, ``p2p_time``) price one transfer alone; the SimPy
processes (``collective``, ``p2p``) run it inside an engine's environment, where a
flow-level model shares links between concurrent transfers. ``set_simulated_ranks`` names
the ranks a graph holds, so a model that places the flows of symmetric peers knows which
ranks stand for the others (models without contention ignore it).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Protocol

import simpy

from workloads.graph import Collective, CommGroup


class Network(Protocol):
    fidelity: str

    def collective_time(self, kind: str, nbytes: float, group: CommGroup) -> float: ...
    def p2p_time(self, src: int, dst: int, nbytes: float) -> float: ...
    def collective(self, env: simpy.Environment, op: Collective) -> Generator: ...
    def p2p(self, env: simpy.Environment, src: int, dst: int, nbytes: float) -> Generator: ...
    def set_simulated_ranks(self, ranks: Iterable[int] | None) -> None: ...
