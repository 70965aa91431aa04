"""The accelerator catalog against the vendors' published tables, and every system simulated.

Each expected row is copied from the table the catalog entry cites (dense values; where a
vendor lists only with-sparsity figures they are halved, and per-system figures divided
by the GPU count, as the entry's source line says)."""

import pytest

from hw_models import catalog, profile
from sim import scenario
from sim.simulate import simulate

# gpu: (bf16 TFLOPS, fp8 TFLOPS or None, HBM GB, HBM TB/s, TDP W or None)
VENDOR = {
    "h100-sxm": (989.4, 1978.9, 80, 3.35, 700),        # H100 datasheet (sparse 1979/3958 halved)
    "h200": (989, 1979, 141, 4.8, 700),                 # H200 datasheet
    "b200": (2250, 4500, 180, 7.672, 1000),             # DGX/HGX B200: 36 PF BF16, 72 PF FP8 sparse / 8 / 2; HBM: device query (pytorch/ao PR 4002)
    "b300": (2250, 4500, 288, 8.0, 1100),               # HGX B300: 36 PF BF16, 72 PF FP8 sparse / 8 / 2
    "gb200": (2450, 4900, 186, 8.0, 1200),              # dgxc-benchmarking peak table
    "gb300": (2500, 5000, 288, 8.0, 1400),              # GB300 NVL72: 360 PF BF16, 720 PF FP8 sparse / 72 / 2
    "h20": (148, 296, 96, 4.0, 400),                    # H20 product brief
    "h800": (989.4, 1978.9, 80, 3.35, 700),             # = H100 SXM5 compute
    "a800": (312, None, 80, 2.039, 400),                # = A100 80GB SXM4
    "mi300x": (1307.4, 2614.9, 192, 5.3, 750),          # AMD MI300X datasheet
    "mi325x": (1307.4, 2614.9, 256, 6.0, 1000),         # AMD MI325X datasheet
    "mi355x": (2516.6, 5033.2, 288, 8.0, 1400),         # AMD MI355X datasheet
    "tpu-v5p": (459, None, 95, 2.765, None),            # Cloud TPU v5p docs
    "tpu-v6e": (918, None, 32, 1.64, None),             # Cloud TPU v6e docs
    "trainium2": (667, 1299, 96, 2.9, None),            # AWS Trn2 docs (20.8 PF FP8 / 16 chips)
    "ascend-910b": (376, None, 64, 1.6, None),          # CloudMatrix384 paper, per die
    "ascend-910c": (752, None, 128, 3.2, None),         # CloudMatrix384 paper
    "gaudi3": (1835, 1835, 128, 3.7, 900),              # Gaudi 3 white paper
}
# FP4 tensor rate (dense TFLOPS) where the vendor lists one: Blackwell and CDNA4 only.
FP4 = {"b200": 9000, "gb200": 10000, "b300": 13500, "gb300": 15000, "mi355x": 10066.4}
# Scale-up bandwidth per GPU per direction (GB/s): the export parts' cut NVLink.
SCALE_UP = {"h800": 200, "a800": 200, "h100-sxm": 450, "h20": 450, "b200": 900}

SYSTEMS = ("dgx-b200", "dgx-b300", "gb200-nvl72", "gb300-nvl72", "hgx-h20", "hgx-h800",
           "hgx-a800", "dgx-h200", "mi300x-8", "mi325x-8", "mi355x-8", "tpu-v5p", "tpu-v6e",
           "trn2", "ascend-910b-8", "ascend-910c-384", "gaudi3-8")


@pytest.mark.parametrize("key", sorted(VENDOR))
def test_peaks_match_vendor_tables(key):
    g = catalog.gpu(key)
    bf16, fp8, hbm, bw, tdp = VENDOR[key]
    assert g.peak_tflops["bf16"] == pytest.approx(bf16)
    assert g.peak_tflops.get("fp8") == (pytest.approx(fp8) if fp8 else None)
    assert (g.hbm_gb, g.hbm_tb_s, g.tdp_w) == (hbm, pytest.approx(bw), tdp)
    assert g.source


def test_low_precision_support_follows_the_part():
    for key, g in catalog.gpus().items():
        assert g.peak_tflops.get("fp4") == (pytest.approx(FP4[key]) if key in FP4 else None), key
        # MX block scaling in the tensor cores: Blackwell (sm100) and CDNA4 only
        assert ("mxfp8" in g.dtypes) == (g.arch in ("sm100", "cdna4")), key
        assert ("nvfp4" in g.dtypes) == (g.arch == "sm100"), key
        if "mxfp8" in g.dtypes:
            assert g.peak_tflops["mxfp8"] == g.peak_tflops["fp8"]
    assert "fp8" not in catalog.gpu("a100-80gb").dtypes      # Ampere has no FP8 tensor cores
    assert "fp8" in catalog.gpu("h800").dtypes


def test_export_parts_cut_nvlink():
    for key, gb_s in SCALE_UP.items():
        assert catalog.gpu(key).scale_up_gb_s == gb_s


def test_every_issue_system_is_in_the_catalog_with_a_source():
    for name in SYSTEMS:
        s = catalog.system(name)
        assert s.source and s.gpu_spec.source
    assert catalog.system("gb300-nvl72").scale_up.domain_gpus == 72
    assert catalog.system("ascend-910c-384").scale_up.domain_gpus == 384
    assert catalog.system("tpu-v5p").scale_up.torus_dims == 3


def test_calibration_status_is_stated():
    h100 = catalog.system("dgx-h100")
    st = profile.calibration_status(profile.load(h100.default_profile), h100.gpu)
    assert st["status"] == "fitted" and "gemm_cublaslt.csv" in st["detail"]
    st = profile.calibration_status(profile.load("h100-measured"), "h100-sxm")
    assert st["status"] == "measured"
    b300 = catalog.system("dgx-b300")
    st = profile.calibration_status(profile.load(b300.default_profile), b300.gpu)
    assert st["status"] == "roofline-assumed" and "h100-sxm" in st["detail"]


@pytest.mark.parametrize("name", SYSTEMS)
def test_simulate_on_every_system(name):
    s = catalog.system(name)
    nodes = max(1, 8 // s.gpus_per_node)
    sc = scenario.parse({"cluster": {"system": name, "nodes": nodes},
                         "workload": {"model": "megatron-1.7b", "global_batch": 16,
                                      "parallel": {"tp": 2, "pp": 2}}})
    r = simulate(sc, band=False)
    world = nodes * s.gpus_per_node
    assert r.world_size == world and r.iteration_time_s > 0
    # bf16 model FLOPs can never beat the part's bf16 peak
    assert 0 < r.mfu < 1
    assert r.extra["calibration"]["status"] in ("fitted", "measured", "roofline-assumed")


@pytest.mark.parametrize("name,nodes,links_per_chip", [("tpu-v5p", 16, 6), ("tpu-v6e", 2, 4),
                                                      ("trn2", 1, 4)])
def test_ici_torus_links(name, nodes, links_per_chip):
    """64 v5p chips form a 4x4x4 torus (6 neighbours), 16 v6e or Trn2 chips a 4x4 (4)."""
    import numpy as np

    from hw_models.topology import build_topology
    s = catalog.system(name)
    topo = build_topology(s, nodes, {"topology": "rail-optimized"} if s.nics_per_node else
                          {"topology": "none"})
    out = np.bincount(topo.src[topo.cls == "nvlink"], minlength=topo.n_gpus)[:topo.n_gpus]
    assert set(out.tolist()) == {links_per_chip}
    per_link = s.scale_up.gb_s_per_gpu * 1e9 / links_per_chip
    assert topo.cap[topo.cls == "nvlink"].max() == pytest.approx(per_link)
