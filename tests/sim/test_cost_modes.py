"""Cost per iteration in rental and capital-cost modes, by hand."""

import pytest

from sim import scenario
from sim.simulate import simulate


def run(system="dgx-h100", **cluster):
    sc = scenario.parse({"cluster": {"system": system, "nodes": 2, **cluster},
                         "workload": {"model": "megatron-1.7b", "global_batch": 16,
                                      "parallel": {"tp": 2, "pp": 2}}})
    return simulate(sc, band=False)


def test_rental_default_and_override():
    r = run()
    t = r.iteration_time_s
    assert r.extra["cost_usd"] == pytest.approx(3.00 * 16 * t / 3600)   # prices.yaml dgx-h100
    r2 = run(price_per_gpu_hour=2.0)
    assert r2.extra["cost_usd"] == pytest.approx(2.0 * 16 * t / 3600)
    tokens = 16 * 2048
    assert r2.extra["cost_usd_per_million_tokens"] == pytest.approx(r2.extra["cost_usd"] / tokens * 1e6)


def test_capital_cost_mode():
    r = run(capex={"price_per_gpu_usd": 30000, "lifetime_years": 5, "power_usd_per_kwh": 0.1})
    t, e = r.iteration_time_s, r.extra["energy_j"]
    hardware = 30000 / (5 * 8760 * 3600) * 16 * t
    assert r.extra["cost"]["mode"] == "capex"
    assert r.extra["cost_usd"] == pytest.approx(hardware + e / 3.6e6 * 0.1)


def test_no_default_price_says_what_to_set():
    r = run("dgx-b300")
    assert r.extra["cost_usd"] is None
    assert "cluster.price_per_gpu_hour" in r.extra["cost"]["missing"]
    assert run("dgx-b300", price_per_gpu_hour=7.0).extra["cost_usd"] > 0


def test_bad_price_is_one_clear_line():
    from hw_models.errors import ClusterSimError
    with pytest.raises(ClusterSimError, match="price_per_gpu_hour"):
        scenario.parse({"cluster": {"price_per_gpu_hour": -1}})


def test_pool_prices_and_sweep_price_override(tmp_path):
    def node(gpu):
        return {"gpu": gpu, "gpus_per_node": 1, "nics_per_node": 1, "nic_gbps": 400,
                "nic_hop_latency_us": 14.0,
                "scale_up": {"kind": "nvswitch", "domain_gpus": 1, "gb_s_per_gpu": 450,
                             "hop_latency_us": 3.4}}
    sc = scenario.parse({
        "cluster": {"pools": [{"name": "a", "system": node("h100-sxm"), "nodes": 1,
                               "price_per_gpu_hour": 2.5},
                              {"name": "b", "system": node("b300"), "nodes": 1,
                               "price_per_gpu_hour": 7.0}]},
        "workload": {"model": "megatron-1.7b", "global_batch": 4,
                     "parallel": {"tp": 1, "pp": 2}}})
    r = simulate(sc, band=False)
    assert r.extra["cost_usd"] == pytest.approx((2.5 + 7.0) * r.iteration_time_s / 3600)
    # the closed-form sweep honours cluster.price_per_gpu_hour too
    from sim.sweep import run, spec
    res = run.run(spec.parse({"base": {"cluster": {"system": "dgx-h100", "nodes": 1,
                                                   "price_per_gpu_hour": 1.0},
                                       "workload": {"model": "megatron-1.7b", "global_batch": 16}},
                              "axes": {"workload.micro_batch": [1, 2]}}),
                  run.Options(out=str(tmp_path / "p.parquet"), progress=False))
    assert res["top"][0]["usd_per_hour"] == pytest.approx(8.0)
