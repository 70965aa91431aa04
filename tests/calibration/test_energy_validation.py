"""LLaMA-1 Table 15 reproduced: GPU-hours within 25% on the 7B, 33B and 65B rows (13B a known miss, +25.6%), and the simulated
GPU-board energy between the idle floor and the paper's nameplate (TDP x hours) figure."""

import pytest

from calibration.validate_energy import validate


@pytest.fixture(scope="module")
def rows():
    return validate()


def test_four_rows(rows):
    assert list(rows.model) == ["llama1-7b", "llama1-13b", "llama1-33b", "llama1-65b"]


def test_gpu_hours_within_25_percent(rows):
    others = rows[rows.model != "llama1-13b"]
    assert len(others) == 3 and others.gpu_hours_err_pct.abs().max() < 25


@pytest.mark.xfail(strict=True, reason="a known miss: LLaMA-1 13B's GPU-hours +25.6% once the "
                   "A100 network's latency grows per tree level as the echo 2- to 16-node "
                   "logs measure it (docs/accuracy.md)")
def test_13b_gpu_hours_within_25_percent(rows):
    assert abs(float(rows[rows.model == "llama1-13b"].gpu_hours_err_pct.iloc[0])) < 25


def test_energy_below_nameplate_above_idle(rows):
    # the paper's figure is 400 W x GPU-hours x 1.1: a ceiling for the boards' energy
    assert (rows.mwh_sim <= rows.mwh_pub_formula_on_sim_hours + 1e-9).all()
    assert (rows.mwh_sim >= 0.1 * rows.mwh_pub_formula_on_sim_hours).all()
    assert rows.avg_power_w.between(40, 400).all()


def test_h100_node_power_near_the_metered_nodes():
    from calibration.validate_energy import node_power
    row = node_power()
    # within 15% of the compute-intensive mean, never above the measured maximum
    assert abs(row["err_pct"]) < 15
    assert row["node_kw_sim"] <= row["node_kw_max_pub"] + 1e-9


def test_mlperf_metered_lora_node_is_reported():
    from calibration.validate_energy import node_power, node_table
    row = node_power()
    # SMC's MLPerf Training v4.0 run: 11,769,962 J DC over 29.10069 min on one node
    assert row["node_kw_mlperf_pub"] == pytest.approx(11_769_962 / (29.10069 * 60) / 1e3, rel=1e-3)
    assert row["mlperf_err_pct"] == pytest.approx(100 * (row["node_kw_sim"] / 6.741 - 1))
    # full training of a dense model on an air-cooled DGX draws more than a LoRA fine-tune
    # (no weight gradients of the frozen base) on an immersion-cooled node without fans
    assert row["node_kw_sim"] > row["node_kw_mlperf_pub"]
    assert "MLPerf Training v4.0" in node_table(row)
