"""Heterogeneous clusters: a 2-pool pipeline against a hand calculation, the speed-balanced
layer split against the even one, and bad pool layouts rejected in one line."""

import pytest

from hw_models import profile
from hw_models.errors import ClusterSimError
from sim import scenario
from sim.pools import balanced_split
from sim.simulate import simulate


def one_gpu(gpu):
    """An inline one-GPU node with one 400 Gb/s NIC."""
    return {"gpu": gpu, "gpus_per_node": 1, "nics_per_node": 1, "nic_gbps": 400,
            "nic_hop_latency_us": 14.0,
            "scale_up": {"kind": "nvswitch", "domain_gpus": 1, "gb_s_per_gpu": 450,
                         "hop_latency_us": 3.4}}


def two_pools(split="even", schedule="gpipe", stage_pools=("fast", "slow"), **parallel):
    return scenario.parse({
        "cluster": {"pools": [{"name": "fast", "system": one_gpu("h100-sxm"), "nodes": 1},
                              {"name": "slow", "system": one_gpu("a100-80gb"), "nodes": 1}]},
        "workload": {"model": "megatron-1.7b", "global_batch": 4, "micro_batch": 1,
                     "parallel": {"tp": 1, "pp": 2, "schedule": schedule,
                                  "stage_pools": list(stage_pools), "stage_split": split,
                                  **parallel}}})


def test_two_pool_gpipe_matches_hand_calculation():
    r = simulate(two_pools())
    tl = r.timeline

    def dur(rank, prefix):
        rows = tl[(tl["rank"] == rank) & tl.name.str.startswith(prefix)]
        d = (rows.end - rows.start).round(12).unique()
        assert len(d) == 1            # every microbatch costs the same on one stage
        return float(d[0])
    f_a, b_a, f_b, b_b = dur(0, "F"), dur(0, "B"), dur(1, "F"), dur(1, "B")
    assert f_b > f_a and b_b > b_a    # the A100 stage is the slow one
    # cross-pool send of one microbatch's activations: 1 x 2048 x 2304 bf16, over the
    # common network at the slower NIC (400 Gb/s = 50 GB/s) on the sender's network curve:
    # the H100 pool's forward, the A100 pool's gradient back. A send pays one network
    # step's latency (NCCL LL: 6.6 + 2.7 us) in place of the fit group's: the h100 curve
    # 35.501 + 9.3 - 35.2 (NCCL's tree on its 4 x 8 fit group) = 9.601 us; the a100
    # curve's ~0 latency stays 0.
    nbytes = 2048 * 2304 * 2
    h100, a100 = (profile.load(n).collectives["network"] for n in ("h100", "a100"))
    c = 9.601e-6 + nbytes / (50e9 * h100.eff(nbytes))
    c_back = nbytes / (50e9 * a100.eff(nbytes))
    sends = tl[tl.stream == "send_fwd"]
    assert (sends.end - sends.start).to_numpy() == pytest.approx(c)
    e = dur(0, "embedding_sync")      # tied embedding gradients, first <-> last stage
    opt = max(dur(0, "optimizer"), dur(1, "optimizer"))
    # GPipe, 4 microbatches, slow second stage: first forward, send, 4 (F + B) on the slow
    # stage, send back, the first stage's last backward, the embedding sync, the optimizer
    want = f_a + c + 4 * (f_b + b_b) + c_back + b_a + e + opt
    assert r.iteration_time_s == pytest.approx(want, rel=1e-9)
    assert [p["gpu"] for p in r.extra["pools"]] == ["NVIDIA H100 80GB SXM5", "NVIDIA A100 80GB SXM4"]


def test_speed_balanced_split_beats_even():
    even = simulate(two_pools("even", "1f1b"))
    speed = simulate(two_pools("speed", "1f1b"))
    fast, slow = speed.extra["pipeline_layers"]
    assert fast > slow and fast + slow == 24
    assert speed.iteration_time_s < 0.8 * even.iteration_time_s
    # a given split is used as given
    given = simulate(two_pools("speed", "1f1b", pipeline_layers=[16, 8]))
    assert given.extra["pipeline_layers"] == [16, 8]


def test_balanced_split_by_hand():
    assert balanced_split(24, [3.0, 1.0]) == (18, 6)
    assert balanced_split(10, [1.0, 1.0, 1.0]) == (4, 3, 3)
    assert balanced_split(8, [100.0, 1.0], multiple=2) == (6, 2)   # at least one unit each


@pytest.mark.parametrize("kw,words", [
    ({"stage_pools": ("slow", "fast")}, "order of cluster.pools"),
    ({"stage_pools": ("fast", "nope")}, "unknown pool"),
    ({"stage_pools": ("fast",)}, "one per stage"),
])
def test_bad_stage_pools(kw, words):
    with pytest.raises(ClusterSimError, match=words):
        simulate(two_pools(**kw))


def test_pool_size_must_match_its_stages():
    sc = two_pools().model_dump()
    sc["cluster"]["pools"][0]["nodes"] = 3            # 4 GPUs, pp 2 -> dp 2: 2 per stage
    with pytest.raises(ClusterSimError, match="pool 'fast' has 3 GPUs"):
        simulate(scenario.parse(sc))


def test_energy_and_cost_of_a_mixed_fleet():
    sc = two_pools().model_dump()
    sc["cluster"]["price_per_gpu_hour"] = 2.0
    r = simulate(scenario.parse(sc))
    e = r.extra["energy"]
    t = r.iteration_time_s
    assert (70 + 40) * t < e["gpu_j"] < (700 + 400) * t      # idle and TDP of H100 + A100
    assert r.extra["cost_usd"] == pytest.approx(2.0 * 2 * t / 3600)


def test_unset_stage_pools_follow_the_pool_sizes():
    sc = two_pools().model_dump()
    sc["workload"]["parallel"]["stage_pools"] = None
    auto = simulate(scenario.parse(sc))
    assert [p["stages"] for p in auto.extra["pools"]] == [[0], [1]]
    assert auto.iteration_time_s == simulate(two_pools()).iteration_time_s
