"""Flow-level network speed: DP all_reduce over 1024 GPUs, all_to_all over 256 GPUs, and
SC'21 GPT-3 175B training iterations under ``fidelity: flow`` vs analytical.

    PYTHONPATH=. python benchmarks/flow_network.py

"flow events" are flow starts + ends on the fabric (a weighted flow counts once);
"flows" is the number of real flows they stand for; "solves" are max-min re-solves.
"""

import time

from calibration.validate_megatron import rows, scenario_for
from hw_models import catalog
from hw_models.profile import load_builtin
from sim.network.analytical import ClusterLayout
from sim.network.flow import FlowNetwork
from sim.scenario import parse
from sim.simulate import simulate
from workloads.graph import CommGroup


def collective(nodes: int, kind: str, ranks: tuple, simulated: tuple | None, cfg: dict) -> None:
    sys = catalog.system("dgx-h100")
    t0 = time.perf_counter()
    nw = FlowNetwork(ClusterLayout(sys, nodes, sys.nic_gbps), load_builtin("h100"), cfg)
    nw.set_simulated_ranks(simulated)
    env_fabrics = []
    orig = nw.fabric

    def spy(env):                      # keep the private environment's fabric for its counters
        fab = orig(env)
        if fab not in env_fabrics:
            env_fabrics.append(fab)
        return fab
    nw.fabric = spy
    t_sim = nw.collective_time(kind, float(1 << 30), CommGroup(ranks))
    wall = time.perf_counter() - t0
    fab = env_fabrics[0]
    print(f"{kind:10s} {len(ranks):5d} ranks on {nodes * 8:5d} GPUs, tolerance {nw.tolerance:g}: "
          f"simulated {t_sim * 1e3:8.2f} ms, wall {wall:6.2f} s, {fab.events} flow events "
          f"({fab.flows_placed} flows), {fab.events / wall:8.0f} events/s, {fab.solves} solves")


def training(sc: dict, label: str) -> None:
    out = []
    for fid in ("analytical", "flow"):
        sc["sim"]["fidelity"] = fid
        t0 = time.perf_counter()
        res = simulate(parse(sc, sc["name"]))
        out.append((fid, res.iteration_time_s, time.perf_counter() - t0,
                    res.breakdown.get("dp", 0.0) / res.iteration_time_s * 100))
    print(f"{label}: " + "; ".join(f"{f} iteration {t:.3f} s, dp {dp:.1f}%, wall {w:.2f} s"
                                   for f, t, w, dp in out))


if __name__ == "__main__":
    dp = tuple(range(0, 1024, 8))       # one DP group; its 7 TP-peer groups are placed too
    collective(128, "all_reduce", dp, dp, {"algo": "ring", "proto": "Simple"})
    collective(8, "all_to_all", tuple(range(64)), None, {"tolerance": 0.0})
    collective(8, "all_to_all", tuple(range(64)), None, {})
    collective(32, "all_to_all", tuple(range(256)), None, {})
    table = rows()
    gpt3 = table[(table.model == "gpt3-175b") & (table.gpus == 1536)].iloc[0]
    training(scenario_for(gpt3), "SC'21 GPT-3 175B, 1536 A100 (tp 8, pp 12, dp 16)")
    sc = scenario_for(gpt3)
    sc["cluster"]["nodes"] = 128
    sc["workload"]["parallel"]["pp"] = 8
    training(sc, "GPT-3 175B, 1024 A100 (tp 8, pp 8, dp 16)")
