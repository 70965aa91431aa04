"""Storage traffic over the fabric: the analytical bound with the fabric as bottleneck, and
flows that share links with a DP all-reduce under the flow model (hand calculations)."""

import pytest
import simpy

from hw_models import catalog, storage
from hw_models.errors import ClusterSimError
from hw_models.profile import load_builtin
from sim.network.analytical import ClusterLayout
from sim.network.flow import FlowNetwork
from sim.run_config import StorageConfig, parse
from sim.storage_flows import attach_storage
from workloads.checkpoint import checkpoint_cost
from workloads.data_loader import input_pipeline
from workloads.graph import Collective, CommGroup

H100 = catalog.system("dgx-h100")
LUSTRE = storage.tier("selene-lustre")          # 50 GB/s per client, 273 GB/s aggregate write
# Inline tier with no per-client limit, so only the fabric and the aggregate can bind.
FAST = storage.tier({"kind": "parallel_fs", "read_gb_s_aggregate": 1000,
                     "write_gb_s_aggregate": 1000})


def test_fabric_is_the_checkpoint_bottleneck():
    # 64 writer nodes x 50 GB/s = 3,200 GB/s of clients and 273 GB/s of tier, but the storage
    # fabric has only 100 GB/s of storage-facing uplinks: 1 TB takes 1e12 / 100e9 + 1 ms.
    net = storage.network({"attach": "frontend", "nics_per_node": 2, "nic_gbps": 200,
                           "uplink_gb_s": 100})
    cost = checkpoint_cost(1e12, LUSTRE, gpus=512, gpus_per_node=8, sharded=True,
                           path=net.resolve())
    assert cost.writer_nodes == 64
    assert cost.write_s == pytest.approx(1e12 / 100e9 + 1e-3)
    # Without the uplink limit the tier binds again (273 GB/s write, 1 TB/s read).
    free = storage.network("dgx-a100-storage").resolve()
    cost = checkpoint_cost(1e12, LUSTRE, gpus=512, gpus_per_node=8, sharded=True, path=free)
    assert cost.write_s == pytest.approx(1e12 / 273e9 + 1e-3)
    # One node behind its two 200 Gb/s storage NICs: 25 GB/s x 2 = 50 GB/s.
    assert FAST.transfer_time("read", 1e11, 1, free) == pytest.approx(1e11 / 50e9)


def test_data_loader_reads_are_capped_by_the_storage_fabric():
    path = storage.network({"attach": "frontend", "nics_per_node": 1, "nic_gbps": 8}).resolve()
    pipe = input_pipeline(1.0, 1e9, 4, nodes=2, prefetch=2, tier=FAST, path=path)
    assert pipe.loader_bw == pytest.approx(2 * 1e9)                  # 2 nodes x 1 GB/s
    assert pipe.load_s == pytest.approx(4e9 / 2e9) and pipe.stalled


def _net(nodes: int = 2) -> FlowNetwork:
    return FlowNetwork(ClusterLayout(H100, nodes, H100.nic_gbps), load_builtin("h100"), {})


def _overlap(net, flows, ckpt_bytes: float, ar_bytes: float) -> dict[str, float]:
    """A checkpoint write from rank 0 started with a DP all-reduce between ranks 0 and 8."""
    env, out = simpy.Environment(), {}
    group = CommGroup((0, 8), "dp")

    def allreduce():
        yield from net.collective(env, Collective("all_reduce", ar_bytes, group))
        out["allreduce"] = env.now

    def ckpt():
        yield from flows.transfer(env, [0], "write", ckpt_bytes)
        out["ckpt"] = env.now
    env.process(ckpt())
    env.process(allreduce())
    env.run()
    return out


def test_checkpoint_on_the_training_fabric_halves_the_allreduce_share():
    net = _net()
    flows = attach_storage(net, FAST, storage.network("converged"))
    nic = H100.nic_gbps / 8 * 1e9                                     # 50 GB/s per rail
    # Alone, a 10 GB checkpoint from rank 0 leaves through its 50 GB/s NIC: 0.2 s.
    assert flows.transfer_time([0], "write", 10e9) == pytest.approx(10e9 / nic)
    group = CommGroup((0, 8), "dp")
    alone = net.collective_time("all_reduce", 1e9, group)
    choice = net.choose("all_reduce", 1e9, group)
    wire = alone - choice.latency_s                                   # bandwidth term alone
    got = _overlap(net, flows, 10e9, 1e9)
    # Rank 0's all-reduce flow shares GPU->NIC->leaf with the checkpoint flow: max-min fair
    # gives each half of 50 GB/s, so the bandwidth term doubles while the write lasts.
    assert got["allreduce"] == pytest.approx(choice.latency_s + 2 * wire, rel=1e-6)
    # The write lost half its rate for the all-reduce's data time: + wire / 2 x 2 = + wire.
    assert got["ckpt"] == pytest.approx(10e9 / nic + wire, rel=1e-6)


def test_frontend_storage_shares_nothing_with_training_traffic():
    net = _net()
    flows = attach_storage(net, FAST, storage.network("dgx-h100-storage"))
    alone = net.collective_time("all_reduce", 1e9, CommGroup((0, 8), "dp"))
    got = _overlap(net, flows, 10e9, 1e9)
    assert got["allreduce"] == pytest.approx(alone, rel=1e-9)
    # Every GPU of both nodes writes: 2 nodes x 100 GB/s of storage NICs.
    assert flows.transfer_time(range(16), "write", 40e9) == pytest.approx(40e9 / 200e9)
    # Reads come back the same way; the tier's 1 TB/s aggregate does not bind here.
    assert flows.transfer_time(range(16), "read", 40e9) == pytest.approx(40e9 / 200e9)


def test_flow_time_meets_the_closed_form_when_the_tier_binds():
    net = _net()
    flows = attach_storage(net, LUSTRE, storage.network("dgx-h100-storage"))
    path = storage.network("dgx-h100-storage").resolve()
    # 2 writer nodes: min(2 x 50 GB/s per client, 2 x 100 GB/s NICs, 273 GB/s) = 100 GB/s.
    expected = LUSTRE.transfer_time("write", 50e9, 2, path)
    assert expected == pytest.approx(50e9 / 100e9 + 1e-3)
    assert flows.transfer_time(range(16), "write", 50e9) == pytest.approx(expected)


def test_storage_network_errors_are_one_line():
    with pytest.raises(ClusterSimError, match="unknown storage network"):
        parse(StorageConfig, {"network": "carrier-pigeon"}, "cluster.storage")
    with pytest.raises(ClusterSimError, match="needs nics_per_node and nic_gbps"):
        storage.network({"attach": "frontend"}).resolve()


def test_scenario_storage_network_reaches_the_run_model():
    from sim.reliability import run_summary
    scen = {"cluster": {"system": "dgx-h100", "nodes": 4,
                        "storage": {"checkpoint": FAST.model_dump(),
                                    "network": {"attach": "backend", "uplink_gb_s": 20}}},
            "workload": {"model": "llama3-8b", "global_batch": 64, "parallel": {"zero": 1},
                         "checkpoint": {"every_steps": 10}},
            "run": {"steps": 20, "samples": 2}}
    s = run_summary(scen, 1.0)
    # Every GPU writes (zero 1) from 4 nodes of 8 x 50 GB/s compute NICs, but the fabric has
    # 20 GB/s towards storage: 14 bytes/param x 8.03e9 params / 20 GB/s.
    from workloads.checkpoint import checkpoint_size
    from workloads.model import resolve
    size = checkpoint_size(resolve("llama3-8b")).total
    assert s["checkpoint_write_s"] == pytest.approx(size / 20e9)
    with pytest.raises(ClusterSimError, match="cluster.storage.network.attach: Input should be"):
        parse(StorageConfig, {"network": {"attach": "sideways"}}, "cluster.storage")
