"""The tuner picks what NCCL's own model picks (src/graph/tuning.cc via nccl_model.py)
and never produces a negative latency with the built-in profiles."""

import pytest

from calibration.validate_nccl import network_for, reference_sweeps
from hw_models.profile import load_builtin
from sim.network.collectives.nccl_model import bus_bw_cap, protocol_factor

SWEEPS = {(s.gpus, s.profile): s for s in reference_sweeps()}


@pytest.mark.parametrize("size,algo,proto", [
    (1 << 10, "tree", "LL"),            # latency bound: LL's 6.8 us base, 0.6 us hops
    (1 << 20, "tree", "LL128"),         # LL is capped at llMaxBw = 39 GB/s on 2 nodes
    (1 << 30, "ring", "Simple"),        # ring n/nsteps > tree 0.5 x 0.92; LL128 x 0.92
    (16 << 30, "ring", "Simple"),
])
def test_two_node_a100_choices_follow_nccl(size, algo, proto):
    net = network_for(SWEEPS[(16, "a100")])
    ch = net.tuner.choose("all_reduce", float(size), tuple(range(16)))
    assert (ch.algo, ch.proto) == (algo, proto)


def test_one_node_a100_goes_ll_ll128_simple():
    net = network_for(SWEEPS[(8, "a100")])
    picks = [net.tuner.choose("all_reduce", float(s), tuple(range(8))).proto
             for s in (1 << 10, 16 << 20, 1 << 30)]
    assert picks == ["LL", "LL128", "Simple"]


def test_one_node_a100_ll128_to_simple_where_nccls_rated_nvlink_puts_it():
    """NCCL rates an A100's NVLink at 12 links x 20 GB/s = 240 GB/s (not 12 x 25).
    8 GPUs, ring: LL128 bus 0.92 x 240 = 220.8 GB/s (cap 12 channels x 20 = 240),
    latency 14.0 + 14 x 1.9 = 40.6 us; Simple 240 GB/s, 8.4 + 14 x 3.4 = 56.0 us;
    algbw = bus x 8/14. Equal at S = 15.4 us / (14/8 x (1/220.8 - 1/240) ns/B)
    = 24.3 MB = 23.2 MiB, so 22 MiB runs LL128 and 24 MiB Simple (Vidur's DGX A100
    sweep switches between its 22 and 24 MiB points: 113 -> 138 GB/s bus)."""
    from sim.network.collectives.nccl_model import nvlink_rating
    assert nvlink_rating("sm80") == pytest.approx(0.8)
    net = network_for(SWEEPS[(8, "a100-dgx")])
    ranks = tuple(range(8))
    assert net.tuner.graph_bw(net.tuner.ctx("all_reduce", 1.0, ranks)) == pytest.approx(240e9)
    assert [net.tuner.nccl_pick("all_reduce", float(m << 20), ranks)[1]
            for m in (22, 24)] == ["LL128", "Simple"]


def test_nccl_factors_and_caps():
    # tuning.cc: ring LL x 1/4 for all_reduce, 1/3 for a single-node all_gather;
    # ring LL128 x 0.92 (0.7 with one GPU per node); tree x 0.92 then LL x 1/3.8.
    assert protocol_factor("ring", "LL", "all_reduce", 1, 8) == 0.25
    assert protocol_factor("ring", "LL", "all_gather", 1, 8) == pytest.approx(1 / 3, 1e-3)
    assert protocol_factor("ring", "LL128", "all_reduce", 2, 1) == 0.7
    assert protocol_factor("tree", "LL", "all_reduce", 2, 8) == pytest.approx(0.92 / 3.8, 1e-4)
    # Ampere: ring LL128 20 GB/s per channel; llMaxBw 87.7 GB/s in one node.
    assert bus_bw_cap("ring", "LL128", 2, "sm80", 8) == pytest.approx(160e9)
    assert bus_bw_cap("ring", "LL", 1, "sm80", 8) == pytest.approx(87.7e9)


@pytest.mark.parametrize("key", sorted(SWEEPS, key=str))
@pytest.mark.parametrize("kind", ["all_reduce", "all_gather", "reduce_scatter", "broadcast"])
def test_latency_never_negative(key, kind):
    sweep = SWEEPS[key]
    tuner = network_for(sweep, load_builtin(sweep.profile)).tuner
    for n in sorted({2, 4, sweep.gpus}):
        ctx = tuner.ctx(kind, 1e6, tuple(range(n)))
        for a, p in tuner.candidates(kind, ctx, None, None):
            assert tuner.latency(a, p, ctx) >= 0, (a.name, p, n)
