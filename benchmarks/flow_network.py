"""Flow-level network speed: DP all_reduce over 1024 GPUs, all_to_all over 256 GPUs.

    PYTHONPATH=. python benchmarks/flow_network.py
"""

import time

from hw_models import catalog
from hw_models.profile import load_builtin
from sim.network.analytical import ClusterLayout
from sim.network.flow import FlowNetwork
from workloads.graph import CommGroup


def run(nodes: int, kind: str, ranks: tuple, simulated: tuple | None, cfg: dict) -> None:
    sys = catalog.system("dgx-h100")
    t0 = time.perf_counter()
    nw = FlowNetwork(ClusterLayout(sys, nodes, sys.nic_gbps), load_builtin("h100"), cfg)
    nw.set_simulated_ranks(simulated)
    t_sim = nw.collective_time(kind, float(1 << 30), CommGroup(ranks))
    wall = time.perf_counter() - t0
    fab = next(iter(nw._fabrics.values()))[1]
    print(f"{kind:10s} {len(ranks):5d} ranks on {nodes * 8:5d} GPUs: simulated {t_sim * 1e3:8.2f} ms, "
          f"wall {wall:6.2f} s, {fab.events} flow events, {fab.events / wall:9.0f} events/s, "
          f"{fab.solves} rate solves")


if __name__ == "__main__":
    dp = tuple(range(0, 1024, 8))
    run(128, "all_reduce", dp, dp, {"algo": "ring", "proto": "Simple"})
    run(32, "all_to_all", tuple(range(256)), None, {})
