"""Storage traffic as flows on the same fabric as training traffic (fidelity ``flow``).

``attach_storage(net, tier, storage_network)`` adds the storage tier to a ``FlowNetwork``'s
topology; ``StorageFlows.transfer(env, ranks, direction, nbytes)`` is then a SimPy process
that moves a checkpoint shard (or a data-loader read) from every rank in ``ranks`` to storage
(or back) as one flow per rank on ``net.fabric(env)``, where it shares links, max-min fairly,
with every collective in flight. Only the FlowNetwork's public surface is used:
``topology``, ``layout`` and ``fabric(env)``.

Graph added to the topology (directed links only, so no GPU-to-GPU shortest path changes:
storage is a sink for writes and a source for reads, never a way through):

- ``backend`` (converged): GPU -> its compute NIC -> leaf -> top-tier switch -> gateway ->
  storage. Checkpoint flows share the NIC and the leaf uplinks with collectives.
- ``frontend``: GPU -> the node's storage NICs -> storage switch -> storage, on links of
  their own; nothing is shared with the training fabric.

Capacities: a node's storage link = min(node NICs, the tier's per-client limit) (frontend),
the gateway -> storage link = min(storage uplinks, the tier's aggregate, the sum of what the
nodes can send), so the flow time of a lone transfer meets the analytical
``StorageTier.transfer_time(..., path)``. Backend attach enforces the per-client limit only
through the compute NICs.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable

import numpy as np
import simpy

from hw_models.errors import ClusterSimError
from hw_models.storage import GB, StorageNetwork, StoragePath, StorageTier
from hw_models.topology import GraphBuilder, Topology


class StorageFlows:
    def __init__(self, net, tier: StorageTier, path: StoragePath, write_v: int, read_v: int):
        self.net, self.tier, self.path = net, tier, path
        self.write_v, self.read_v = write_v, read_v
        self._last: tuple[simpy.Environment, simpy.Event] | None = None   # last transfer's flows

    def transfer(self, env: simpy.Environment, ranks: Iterable[int], direction: str,
                 nbytes: float) -> Generator:
        """``nbytes`` split evenly over ``ranks``; one flow per rank; latency first."""
        ranks = tuple(ranks)
        if not ranks or nbytes <= 0:
            return
        topo, fabric = self.net.topology, self.net.fabric(env)
        if len(fabric.cap) != topo.n_links:
            raise ClusterSimError("attach_storage must run before the network's fabric is first "
                                  "used in this environment")
        yield env.timeout(self.tier.latency_ms * 1e-3)
        gv = topo.gpu_vertex
        if direction == "write":
            paths = [topo.route_v(int(gv[r]), self.write_v) for r in ranks]
        elif direction == "read":
            paths = [topo.route_v(self.read_v, int(gv[r])) for r in ranks]
        else:
            raise ClusterSimError(f"storage direction {direction!r}; allowed: read, write")
        done = fabric.transfer([(p, nbytes / len(ranks)) for p in paths])
        self._last = (env, done)
        yield done

    def bytes_left(self, env: simpy.Environment, nbytes: float) -> float:
        """Bytes of the last transfer started in ``env`` (of ``nbytes``) not yet moved:
        ``nbytes`` while it still waits for the tier latency, 0 once it is done. Reads the
        fabric's batch of that transfer, brought up to date to ``env.now``."""
        if self._last is None or self._last[0] is not env:
            return nbytes
        done = self._last[1]
        if done.triggered:
            return 0.0
        for batch in self.net.fabric(env).batches.values():
            if batch.done is done:
                batch.advance(env.now)
                return float(np.dot(np.maximum(batch.remaining, 0.0), batch.weight))
        return 0.0

    def transfer_time(self, ranks: Iterable[int], direction: str, nbytes: float) -> float:
        """The transfer alone (no other traffic), in a private environment."""
        env = simpy.Environment()
        env.process(self.transfer(env, ranks, direction, nbytes))
        env.run()
        return env.now


def attach_storage(net, tier: StorageTier, network: StorageNetwork) -> StorageFlows:
    """Add ``tier`` to ``net``'s topology as ``network`` describes; call before any flow runs."""
    layout = net.layout
    sysm = layout.system
    nic_bw = sysm.nics_per_node * layout.nic_gbps / 8 * GB
    path = network.resolve(nic_bw)
    old: Topology = net.topology
    b = GraphBuilder(kinds=list(old.kinds), links=list(zip(
        old.src.tolist(), old.dst.tolist(), old.cap.tolist(), old.lat.tolist(), old.cls.tolist(),
        strict=True)))
    nodes = layout.nodes
    total = nodes * path.node_bw              # never binding: keeps every capacity finite
    agg = {d: min(x for x in (path.uplink_bw, total, _agg(tier, d)) if x is not None)
           for d in ("read", "write")}
    if network.attach == "backend":
        w, r = _backend(b, old, agg, total)
    else:
        w, r = _frontend(b, old, nodes, sysm.gpus_per_node, path.node_bw, tier, agg)
    net.topology = Topology(old.name, b, old.gpu_vertex.tolist(), old.domain, old.gpus_per_node)
    return StorageFlows(net, tier, path, w, r)


def _agg(tier: StorageTier, direction: str) -> float | None:
    gb = getattr(tier, f"{direction}_gb_s_aggregate")
    return gb * GB if gb else None


def _one_way(b: GraphBuilder, a: int, c: int, cap: float) -> None:
    b.links.append((a, c, cap, 0.0, "storage"))


def _sinks(b: GraphBuilder, agg: dict[str, float]) -> tuple[int, int, int, int]:
    """Write: gateway -> storage (sink); read: storage (source) -> gateway."""
    gw_w, st_w, st_r, gw_r = (b.vertex(k) for k in ("storage-gw", "storage", "storage",
                                                    "storage-gw"))
    _one_way(b, gw_w, st_w, agg["write"])
    _one_way(b, st_r, gw_r, agg["read"])
    return gw_w, st_w, st_r, gw_r


def _backend(b: GraphBuilder, old: Topology, agg: dict[str, float], total: float
             ) -> tuple[int, int]:
    kinds = np.asarray(old.kinds)
    tops = next((np.flatnonzero(kinds == k) for k in ("core", "spine", "leaf")
                 if (kinds == k).any()), None)
    if tops is None:
        raise ClusterSimError(f"backend storage needs a switched scale-out network; topology "
                              f"{old.name!r} has no leaf/spine/core switches (use frontend)")
    gw_w, st_w, st_r, gw_r = _sinks(b, agg)
    for t in tops.tolist():
        _one_way(b, t, gw_w, total)
        _one_way(b, gw_r, t, total)
    return st_w, st_r


def _frontend(b: GraphBuilder, old: Topology, nodes: int, gpn: int, node_bw: float,
              tier: StorageTier, agg: dict[str, float]) -> tuple[int, int]:
    gw_w, st_w, st_r, gw_r = _sinks(b, agg)
    client = {d: getattr(tier, f"{d}_gb_s_per_client") for d in ("read", "write")}
    cap = {d: min(node_bw, client[d] * GB) if client[d] else node_bw for d in client}
    for n in range(nodes):
        up, down = b.vertex("storage-nic"), b.vertex("storage-nic")
        _one_way(b, up, gw_w, cap["write"])
        _one_way(b, gw_r, down, cap["read"])
        for g in range(gpn):
            v = int(old.gpu_vertex[n * gpn + g])
            _one_way(b, v, up, node_bw)
            _one_way(b, down, v, node_bw)
    return st_w, st_r
