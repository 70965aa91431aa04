"""The wait of an eager MoE layer's cross-rank sync for the slowest expert-parallel peer's
host (sim/costs.py HostLaunch.skew, workloads/host_launch.py EpSync): the expected maximum
of k standard normals against its closed forms, block times by hand, and no wait at EP 1
or inside a CUDA graph of the MoE layer."""

from __future__ import annotations

import math

import pytest

from calibration import moe_host_check
from hw_models import catalog
from hw_models.compute import expected_max_normal
from sim.costs import HostLaunch
from workloads.graph import Compute
from workloads.host_launch import EpSync, MoeLaunch, ep_sync, host_sync

US = 1e-6


def test_expected_max_of_normals_closed_forms():
    # E[max of 2] = 1/sqrt(pi); E[max of 3] = 3/(2 sqrt(pi)); E[max of 4] = 6/pi^(3/2)
    # arctan(sqrt 2); the tabulated E[max of 8] = 1.42360 (Harter 1961, Table 1).
    assert expected_max_normal(1) == 0.0
    assert expected_max_normal(2) == pytest.approx(1 / math.sqrt(math.pi), rel=1e-9)
    assert expected_max_normal(3) == pytest.approx(3 / (2 * math.sqrt(math.pi)), rel=1e-9)
    assert expected_max_normal(4) == pytest.approx(6 / math.pi ** 1.5 * math.atan(math.sqrt(2)), rel=1e-9)
    assert expected_max_normal(8) == pytest.approx(1.42360, abs=1e-5)


def _kernels(n: int, g_us: float) -> list[Compute]:
    return [Compute("elementwise", duration_s=g_us * US, name="k")] * n


def _host(cv: float, scopes: frozenset[str] = frozenset()) -> HostLaunch:
    return HostLaunch(10 * US, scopes, moe=MoeLaunch(10 * US, 10 * US, cv))


def test_wait_by_hand():
    # 10 kernels of 1 us, the sync over 2 ranks, 10 kernels, the sync, 10 kernels; the host
    # issues one per 10 us. The stretch between the two syncs: 100 us of host, the slowest
    # of 2 peers at c = 0.5: 100 x (1 + 0.5 / sqrt(pi)) = 128.21 us against 10 us of GPU.
    # The head starts at no sync (the ranks' spread there is unknown): 100 - 10 us; the
    # tail ends at none: 100 - 10 us. Exposed: 118.21 + 2 x 90 = 298.21 us; without the
    # skew 270 us.
    ops = (*_kernels(10, 1), ep_sync(2), *_kernels(10, 1), ep_sync(2), *_kernels(10, 1))
    times = [getattr(o, "duration_s", 0.0) or 0.0 for o in ops]
    stretch = 100 * (1 + 0.5 / math.sqrt(math.pi))
    assert stretch == pytest.approx(128.2095, abs=1e-4)
    assert _host(0.5).exposed(ops, times) == pytest.approx((stretch - 10 + 180) * US)
    assert _host(0.0).exposed(ops, times) == pytest.approx(270 * US)
    # cut inside the stretch, the first run's tail and the second's head join into it and
    # take the skew of the sync that ends it
    a, b = _host(0.5).segments(ops[:15], times[:15]), _host(0.5).segments(ops[15:], times[15:])
    assert (a + b).exposed == pytest.approx((stretch - 10 + 180) * US)
    assert a.exposed + b.exposed == pytest.approx(2 * 90 * US + (40 - 4 + 60 - 6) * US)
    # a GPU-bound stretch (GPU 200 us > 128.21 us of the slowest host) waits for no host
    ops = (ep_sync(2), *_kernels(10, 20), ep_sync(2))
    assert _host(0.5).exposed(ops, [0.0] + [20 * US] * 10 + [0.0]) == 0.0


def test_no_wait_at_ep1_local_sync_or_graphed_moe():
    assert _host(0.5).skew(ep_sync(1)) == 0.0
    assert _host(0.5).skew(host_sync()) == 0.0              # a sync on this GPU alone
    assert _host(0.5).skew(ep_sync(8)) == pytest.approx(0.5 * 1.42360, abs=1e-5)
    assert _host(0.5, frozenset({"moe"})).skew(ep_sync(8)) == 0.0
    assert _host(0.5, frozenset({"moe_router", "moe_preprocess"})).skew(ep_sync(8)) > 0
    assert HostLaunch(10 * US).skew(ep_sync(8)) == 0.0     # not Megatron-Core's MoE layer


def test_fit_by_hand():
    # MOE_DISPATCH 2625.0 us median less its 2 all-to-all calls at 13.48 us = 2598.04 us
    # of wait, over the model's 4145.0 us stretch between two syncs and e_8 = 1.42360.
    sync = moe_host_check._layer()[1][-1]
    assert isinstance(sync, EpSync) and sync.ranks == 8
    h, g, calls = moe_host_check.stretch_s()
    assert calls == pytest.approx(2 * 13.48 * US)
    assert h == pytest.approx(4145.0 * US, abs=0.5 * US) and g < h
    c = (2624.975 - 2 * 13.48) / (h / US * 1.42360)
    assert moe_host_check.fit_skew_cv() == pytest.approx(c, rel=1e-5)
    assert catalog.moe_ep_skew_cv() == pytest.approx(c, abs=5e-5)
    # the dispatch range then matches its median; the whole layer is the check
    got = moe_host_check.model_ms()
    assert got["dispatch"]["cpu"] == pytest.approx(2.625, abs=0.001)
