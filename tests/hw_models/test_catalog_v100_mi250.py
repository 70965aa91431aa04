"""NVIDIA V100 SXM2 and AMD MI250 in the catalog, against the vendors' datasheets.

V100 (NVIDIA Tesla V100 datasheet, SXM2 column): FP32 15.7 TFLOPS, tensor 125 TFLOPS
(FP16), 16 or 32 GB HBM2 at 900 GB/s, NVLink 300 GB/s (both directions), 300 W, 80 SMs.
MI250 (AMD Instinct MI250 datasheet, per OAM): FP16/BF16 362.1 TFLOPS, FP32 matrix 90.5,
128 GB HBM2e at 3.2768 TB/s, 208 CUs, 500 W; the catalog entry is one of its two GCDs
(the device ROCm and PyTorch see), so twice the entry is the datasheet's module."""

import pytest

from hw_models import catalog, profile
from hw_models.errors import ClusterSimError
from sim import scenario
from sim.simulate import simulate


@pytest.mark.parametrize("key, hbm_gb", [("v100-16gb", 16), ("v100-32gb", 32)])
def test_v100_matches_the_datasheet(key, hbm_gb):
    g = catalog.gpu(key)
    assert g.peak_tflops == {"fp32": 15.7, "fp16": 125}       # no BF16, TF32 or FP8 units
    assert (g.hbm_gb, g.hbm_tb_s, g.tdp_w, g.sms) == (hbm_gb, 0.9, 300, 80)
    assert 2 * g.scale_up_gb_s == 300                          # NVLink 300 GB/s bidirectional
    assert "V100" in g.source and not g.supports("bf16")


def test_mi250_entry_is_half_the_datasheet_module():
    g = catalog.gpu("mi250")
    assert 2 * g.peak_tflops["fp16"] == pytest.approx(362.1)
    assert 2 * g.peak_tflops["bf16"] == pytest.approx(362.1)
    assert 2 * g.peak_tflops["fp32"] == pytest.approx(90.5)
    assert (2 * g.hbm_gb, 2 * g.hbm_tb_s, 2 * g.sms, 2 * g.tdp_w) == (
        128, pytest.approx(3.2768), 208, 500)
    assert "fp8" not in g.dtypes and "MI250" in g.source


def test_devices_as_the_profiler_names_them():
    assert catalog.gpu_for_device("Tesla V100-SXM2-32GB", 34.1) == "v100-32gb"
    assert catalog.gpu_for_device("Tesla V100-SXM2-16GB", 16.9) == "v100-16gb"
    assert catalog.gpu_for_device("AMD Instinct MI250X/MI250", 68.7) == "mi250"
    # ROCm's generic name: matched on vendor, CU count and memory (104 CUs, 64 GiB)
    assert catalog.gpu_for_device("AMD Radeon Graphics", 68.7, 104) == "mi250"
    assert catalog.gpu_for_device("AMD Radeon Graphics", 68.7, 110) is None   # MI250X GCD
    assert catalog.gpu_for_device("AMD Radeon Graphics", 34.4, 104) is None   # other memory
    assert catalog.gpu_for_device("AMD Radeon Graphics", 68.7) is None
    assert catalog.gpu_for_device("NVIDIA Foo", 68.7, 104) is None           # not AMD
    assert catalog.system_for_gpu("v100-32gb") == "dgx-1-v100-32gb"
    assert catalog.system_for_gpu("mi250") == "mi250-8"


def test_borrowed_efficiencies_are_stated():
    for name, gpu in (("dgx-1-v100", "v100-16gb"), ("mi250-8", "mi250")):
        s = catalog.system(name)
        st = profile.calibration_status(profile.load(s.default_profile), s.gpu)
        assert s.gpu == gpu and st["status"] == "roofline-assumed" and "a100" in st["detail"]


def test_cube_mesh_pair_gets_a_seventh_of_the_nvlink_bandwidth():
    """DGX-1's cube-mesh as a full mesh: 150 GB/s per direction over 7 peers, about one
    25 GB/s NVLink2 link for a pair, all of it for the 8 GPUs (hw_models/mesh_rings.py)."""
    from hw_models.mesh_rings import mesh_group_bw
    up = catalog.system("dgx-1-v100").scale_up
    assert mesh_group_bw(up.gb_s_per_gpu, up.domain_gpus, 2) == pytest.approx(150 / 7)
    assert mesh_group_bw(up.gb_s_per_gpu, up.domain_gpus, 8) == pytest.approx(150)


def _scenario(precision: str):
    return scenario.parse({"cluster": {"system": "dgx-1-v100", "nodes": 1},
                           "workload": {"model": "megatron-1.7b", "global_batch": 16,
                                        "precision": precision, "parallel": {"tp": 2, "pp": 2}}})


def test_v100_runs_fp16_and_refuses_bf16():
    r = simulate(_scenario("fp16"), band=False)
    assert r.world_size == 8 and 0 < r.mfu < 1
    with pytest.raises(ClusterSimError, match="does not support bf16"):
        simulate(_scenario("bf16"), band=False)
