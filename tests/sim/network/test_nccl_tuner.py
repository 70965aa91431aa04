"""The tuner picks what NCCL's own model picks (src/graph/tuning.cc via nccl_model.py)
and never produces a negative latency with the built-in profiles."""

import pytest

from calibration.validate_nccl import check_sweeps, network_for, reference_sweeps
from hw_models.profile import load_builtin
from sim.network.collectives.base import get
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


VOLTAGE_PARK_AG = next(s for s in check_sweeps() if s.collective == "all_gather")


def test_four_node_h100_all_gather_latencies_are_nccl_2_24_3s():
    """4 x 8 H100, 32 ranks, all_gather ring: nsteps 31, 3 of them across nodes
    (v2.24.3-1 src/graph/tuning.cc:228-230, 317), each intra-node step at least the
    proxy's 1 us (x 3 for Simple, tuning.cc:310-316), no latencyInter on IB
    (src/transport/net_ib.cc:770):
    LL 6.6 + 28 x 1.0 + 3 x 2.7 = 42.7 us; LL128 14 + 28 x 1.9 + 3 x 4.0 = 79.2 us;
    Simple 8.4 + 28 x 3.4 + 3 x 14 = 145.6 us."""
    tuner = network_for(VOLTAGE_PARK_AG).tuner
    ctx = tuner.ctx("all_gather", 1.0, tuple(range(32)))
    ring = get("ring")
    lat = {p: tuner.latency(ring, p, ctx, fitted=False) * 1e6 for p in ("LL", "LL128", "Simple")}
    assert lat == pytest.approx({"LL": 42.7, "LL128": 79.2, "Simple": 145.6}, abs=1e-9)


@pytest.mark.parametrize("size,proto", [
    (512 << 10, "LL"), (1 << 20, "LL128"), (2 << 20, "LL128"), (4 << 20, "LL128"),
    (64 << 20, "LL128"), (128 << 20, "Simple"), (8 << 30, "Simple")])
def test_four_node_h100_all_gather_follows_nccl_2_24_3(size, proto):
    """NCCL 2.24.3 runs a four-node all_gather as a ring only (PAT needs one GPU per node,
    tuning.cc:176; NVLS all_gather is single-node, src/enqueue.cc:1600). Ring graph: 8
    channels at 48 GB/s (search.cc:936, 919), busBw 384 GB/s; algBw x 32/31:
    LL min(20.4, 0.5 x 384) = 20.4 -> 21.06 GB/s; LL128 min(0.92 x 384, 8 x 36.7) = 293.6
    -> 303.07 GB/s; Simple 384 -> 396.39 GB/s (tuning.cc:250-251, 286). With the latencies
    above, LL = LL128 at 36.5 us / (1/21.06 - 1/303.07) us/kB = 0.79 MiB and LL128 =
    Simple at 66.4 us / (1/303.07 - 1/396.39) us/kB = 81.5 MiB (72.1 MiB with the
    simulator's 400 GB/s graph): LL to 512 KiB, LL128 1-64 MiB, Simple from 128 MiB.
    The measured 2 -> 4 MiB jump (111 -> 193 us) is inside LL128."""
    net = network_for(VOLTAGE_PARK_AG)
    ch = net.tuner.choose("all_gather", float(size), tuple(range(32)))
    assert (ch.algo, ch.proto) == ("ring", proto)

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
