"""Storage tiers, checkpoint size/cost and the input pipeline against closed forms and
Megatron-LM SC'21 section 5.9 (13.8 TB 1T-model checkpoint, 273 GB/s save, 1 TB/s load)."""

import pytest

from hw_models import storage
from hw_models.errors import ClusterSimError
from workloads.checkpoint import checkpoint_cost, checkpoint_size, storage_io
from workloads.data_loader import input_pipeline
from workloads.graph import ExecutionGraph
from workloads.model import resolve

LUSTRE = storage.tier("selene-lustre")


@pytest.mark.parametrize("clients, bw", [(2, 100e9), (64, 273e9)])   # per-client vs aggregate bound
def test_transfer_time_is_size_over_min_bandwidth_plus_latency(clients, bw):
    assert LUSTRE.transfer_time("write", 1e12, clients) == pytest.approx(1e12 / bw + 1e-3)


def test_megatron_1t_checkpoint_size_save_and_load():
    size = checkpoint_size(resolve("megatron-1t"))
    assert size.bytes_per_param == 14                              # ZeRO section 3.1, no grads
    assert size.total == pytest.approx(13.8e12, rel=0.03)          # published 13.8 TB
    # Megatron without a sharded optimizer: one replica (tp 8 x pp 64 = 512 GPUs) writes
    cost = checkpoint_cost(size.total, LUSTRE, gpus=3072, gpus_per_node=8, model_parallel=512)
    assert cost.writer_nodes == 64
    assert cost.blocking_s == cost.write_s == pytest.approx(size.total / 273e9 + 1e-3)
    assert cost.load_s == pytest.approx(size.total / 1e12 + 1e-3)  # all 384 nodes read
    assert cost.write_s == pytest.approx(13.8e12 / 273e9, rel=0.03)
    assert cost.load_s == pytest.approx(13.8e12 / 1e12, rel=0.03)


def test_async_blocks_only_for_the_snapshot():
    size = checkpoint_size(resolve("llama3-8b")).total
    link = storage.host_link("h100-sxm")
    cost = checkpoint_cost(size, LUSTRE, gpus=64, gpus_per_node=8, sharded=True, mode="async",
                           host=link)
    assert cost.blocking_s == pytest.approx(size / 64 / 63e9)
    assert cost.write_s == pytest.approx(size / min(8 * 50e9, 273e9) + 1e-3)


def test_storage_io_is_a_memory_node_with_tier_meta():
    g = ExecutionGraph(8)
    nid = storage_io(g, 0, "write", 1e9, "selene-lustre", LUSTRE, clients=1)
    node = g.nodes[nid]
    assert node.op.kind == "storage_write" and node.stream == "storage"
    assert node.meta == {"tier": "selene-lustre", "clients": 1}
    assert node.op.duration_s == pytest.approx(1e9 / 50e9 + 1e-3)


def test_input_pipeline_stalls_only_when_loader_is_slower():
    slow = input_pipeline(1.0, 1e6, 4, nodes=1, prefetch=2, loader_gb_s_per_node=0.002)
    assert slow.load_s == 2.0 and slow.effective_step_s == 2.0 and slow.stalled
    assert "input-bound" in slow.message()
    fast = input_pipeline(1.0, 1e6, 4, nodes=1, prefetch=2, loader_gb_s_per_node=0.008)
    assert not fast.stalled and fast.effective_step_s == 1.0
    serial = input_pipeline(1.0, 1e6, 4, nodes=1, prefetch=0, loader_gb_s_per_node=0.008)
    assert serial.effective_step_s == 1.5                        # nothing overlaps


def test_bad_storage_input_is_one_clear_error():
    with pytest.raises(ClusterSimError, match="write_gb_s_aggregate: Input should be greater than 0"):
        storage.tier({"kind": "parallel_fs", "write_gb_s_aggregate": -1})
    with pytest.raises(ClusterSimError, match="unknown storage tier"):
        storage.tier("tape")
