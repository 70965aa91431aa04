"""RL rollout and training on different pools of a heterogeneous cluster, against hand
calculations and against the same phases run on a plain cluster of each pool's system."""

import pytest

from hw_models import catalog, profile
from hw_models.errors import ClusterSimError
from sim import scenario
from sim.rl import simulate_rl
from workloads.model import resolve

POOLS = [{"name": "gen", "system": "dgx-b200", "nodes": 1},
         {"name": "trainer", "system": "dgx-h100", "nodes": 1}]


def work(**kw):
    return {"kind": "rl", "algorithm": "grpo", "model": "llama3-8b", "prompts_per_step": 4,
            "samples_per_prompt": 4, "prompt_len": 128,
            "response_len": {"dist": "uniform", "low": 32, "high": 512},
            "rollout": {"parallel": {"tp": 2}},
            "train": {"global_batch": 8, "parallel": {"tp": 2}, "max_seq_len": 1024}} | kw


def pooled(**kw):
    return scenario.parse({"name": "rl-pools", "cluster": {"pools": POOLS},
                           "workload": work(placement={"rollout_pool": "gen", "train_pool": "trainer"},
                                            **kw)})


def plain(system: str, **kw):
    return scenario.parse({"name": "rl-plain", "cluster": {"system": system, "nodes": 2},
                           "workload": work(placement={"rollout_gpus": 8, "train_gpus": 8}, **kw)})


@pytest.fixture(scope="module")
def two_pools():
    return simulate_rl(pooled())


def test_each_phase_runs_on_its_pools_gpu(two_pools):
    on_b200, on_h100 = simulate_rl(plain("dgx-b200")), simulate_rl(plain("dgx-h100"))
    m = two_pools.metrics
    # The whole pool by default: 8 rollout GPUs (4 replicas of tp 2) and 8 training GPUs.
    assert two_pools.extra["placement"] == {"rollout_gpus": 8, "train_gpus": 8,
                                            "rollout_pool": "gen", "train_pool": "trainer"}
    assert m["generation_s"] == pytest.approx(on_b200.metrics["generation_s"], rel=1e-12)
    assert m["passes"] == pytest.approx(on_h100.metrics["passes"], rel=1e-12)
    assert m["generation_s"] < on_h100.metrics["generation_s"]      # B200 decodes faster


def test_cross_pool_sync_is_the_shard_over_the_common_network(two_pools):
    # Every rollout GPU (tp 2) receives half of the bf16 weights from the other pool; the
    # common network runs at the slower pool's NIC share per GPU, at the fitted scale-out
    # efficiency of the sender's (H100) profile at the message's size (GB: near its plateau).
    need = resolve("llama3-8b").params * 2 / 2
    assert two_pools.extra["sync_bytes_per_gpu"] == pytest.approx(need, rel=1e-12)
    bw = min(catalog.system(s).nic_bw_per_gpu for s in ("dgx-b200", "dgx-h100"))
    curve = profile.load("h100").collectives["network"]
    transport = two_pools.metrics["weight_sync_s"] - two_pools.extra["sync_tensor_s"]
    assert transport == pytest.approx(curve.latency_us * 1e-6 + need / (bw * curve.eff(need)),
                                      rel=0.03)


def test_step_adds_the_phases_on_policy(two_pools):
    m = two_pools.metrics
    total = m["generation_s"] + m["logprob_s"] + m["train_s"] + m["weight_sync_s"]
    assert m["step_time_s"] == pytest.approx(total, rel=1e-12)
    assert m["offload_s"] == 0.0


def test_same_pool_split_is_the_plain_split():
    sc = scenario.parse({"name": "x", "cluster": {"pools": [{"name": "h", "system": "dgx-h100",
                                                              "nodes": 2}]},
                         "workload": work(placement={"rollout_pool": "h", "train_pool": "h",
                                                     "rollout_gpus": 8})})
    a, b = simulate_rl(sc), simulate_rl(plain("dgx-h100"))
    assert a.metrics["step_time_s"] == pytest.approx(b.metrics["step_time_s"], rel=1e-12)


@pytest.mark.parametrize("placement, words", [
    ({"rollout_pool": "gpu", "train_pool": "trainer"}, ["'gpu'", "gen", "trainer"]),
    ({"rollout_pool": "gen", "train_pool": "trainer", "rollout_gpus": 16}, ["16", "'gen'", "8 GPUs"]),
    ("colocated", ["gen", "trainer", "rollout_pool"]),
])
def test_bad_pool_placement_is_one_line(placement, words):
    sc = scenario.parse({"name": "x", "cluster": {"pools": POOLS},
                         "workload": work(placement=placement)})
    with pytest.raises(ClusterSimError) as exc:
        simulate_rl(sc)
    msg = str(exc.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_pool_names_without_pools_is_an_error():
    sc = scenario.parse({"name": "x", "cluster": {"system": "dgx-h100", "nodes": 2},
                         "workload": work(placement={"rollout_pool": "a", "train_pool": "b"})})
    with pytest.raises(ClusterSimError, match="no cluster.pools"):
        simulate_rl(sc)


def test_sweep_row_on_pools_prices_each_pool():
    from sim.rl_sweep import evaluate_rl
    base = pooled().model_dump(mode="json", exclude_none=True)
    row = evaluate_rl(base, (0, {"workload.off_policy_steps": 0}, None))
    assert row["status"] == "ok" and row["placement"] == "8 gen + 8 trainer"
    b200, h100 = (catalog.system(s).cost_per_gpu_hour_usd for s in ("dgx-b200", "dgx-h100"))
    assert row["usd_per_hour"] == pytest.approx(8 * b200 + 8 * h100)


def test_broadcast_sync_sends_the_whole_model_to_every_rollout_gpu():
    # sync: broadcast (NeMo RL's default between separate pools): every rollout GPU receives
    # the full bf16 weights, twice the tp-2 shard of the reshard. One NCCL ring over both
    # pools brings each byte into a node once over its 8 NICs: 8 x 400 Gb/s = 400 GB/s on
    # both DGX systems (below NVLink), at the sender's (H100) scale-out efficiency.
    res = simulate_rl(pooled(sync="broadcast"))
    full = resolve("llama3-8b").params * 2
    assert res.extra["sync_bytes_per_gpu"] == pytest.approx(full, rel=1e-12)
    bw = min(catalog.system(s).nic_bw_per_gpu * 8 for s in ("dgx-b200", "dgx-h100"))
    assert bw == pytest.approx(400e9)
    eff = profile.load("h100").collectives["network"].eff(full)
    transport = res.metrics["weight_sync_s"] - res.extra["sync_tensor_s"]
    assert transport == pytest.approx(full / (bw * eff), rel=0.03)
    # on a plain cluster too: the training pool sends every rollout GPU the whole model
    plain_b = simulate_rl(plain("dgx-h100", sync="broadcast"))
    assert plain_b.extra["sync_bytes_per_gpu"] == pytest.approx(full, rel=1e-12)


@pytest.mark.parametrize("system, nodes", [("dgx-h100", 2), ("gb200-nvl72", 18)])
def test_broadcast_between_pools_of_one_system_is_the_plain_clusters_ring(system, nodes):
    """Two pools of one system: the pooled broadcast is the NCCL ring a single cluster of
    those nodes runs over the same ranks (sim/rl_sync.py, the network's own broadcast),
    one formula for both: on NVL72 a domain's 72 NICs feed the ring up to the GPU's NVLink
    bandwidth (900 GB/s), not one 4-GPU tray's NICs (200 GB/s)."""
    from sim import rl_pools, rl_sync
    from sim.rl_timeline import PoolSizes
    spec = catalog.system(system)
    gpus = nodes * spec.gpus_per_node
    pools = [{"name": "gen", "system": system, "nodes": nodes},
             {"name": "trainer", "system": system, "nodes": nodes}]
    sc = scenario.parse({"name": "x", "cluster": {"pools": pools}, "workload": work(
        sync="broadcast", placement={"rollout_pool": "gen", "train_pool": "trainer"})})
    model = resolve("llama3-8b")
    got = rl_pools.cross_pool_sync(sc, rl_pools.resolve(sc), model.params, 2)
    one = scenario.parse({"name": "y", "cluster": {"system": system, "nodes": 2 * nodes},
                          "workload": work(sync="broadcast",
                                           placement={"rollout_gpus": gpus, "train_gpus": gpus})})
    want = rl_sync.nccl_sync(one, spec, PoolSizes(gpus, gpus, False), model,
                             profile.load(spec.default_profile))
    assert got["weight_sync_s"] == pytest.approx(want["weight_sync_s"], rel=1e-12)
    assert got["sync_bytes_per_gpu"] == want["sync_bytes_per_gpu"] == model.params * 2
