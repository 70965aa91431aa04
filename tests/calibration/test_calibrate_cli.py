"""End to end on this CPU: calibrate run (quick) -> calibrate fit -> load -> predict."""

import json
import subprocess
import sys

import pytest

from hw_models import catalog
from hw_models.compute import ComputeModel
from hw_models.profile import device_gpu, load

CLI = [sys.executable, "-m", "sim.cli.main", "calibrate"]


def _cli(*args):
    return subprocess.run(CLI + list(args), capture_output=True, text=True)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    out = tmp_path_factory.mktemp("calib")
    for suite in ("kernels", "collectives"):
        r = _cli("run", suite, "--device", "cpu", "--out", str(out), "--quick")
        assert r.returncode == 0, r.stderr
    prof = out / "cpu.yaml"
    r = _cli("fit", str(out / "kernels_cpu.csv"), str(out / "collectives_cpu_2r.csv"),
             "--out", str(prof))
    assert r.returncode == 0, r.stderr
    return out, prof


@pytest.mark.slow
def test_fit_loads_and_predicts_its_own_gemms(fitted):
    out, path = fitted
    import pandas as pd
    p = load(path)
    assert p.device == "cpu" and p.device_spec.peak_tflops["fp32"] > 0
    assert len(p.inputs) == 2 and len(p.inputs[0]["sha256"]) == 64
    cm = ComputeModel(device_gpu(p, catalog.gpu("cpu")), p)
    df = pd.read_csv(out / "kernels_cpu.csv")
    g = df[df.op_class == "gemm"]
    # The written profile, read back through ComputeModel, must reproduce the residuals
    # the fit recorded (a shared machine makes the raw points noisy, not this identity).
    pred = [cm.time("gemm", f, b, "fp32") for f, b in zip(g.flops, g.bytes, strict=True)]
    err = (abs(pd.Series(pred, index=g.index) / g.median_s - 1)).median() * 100
    assert err == pytest.approx(p.quality["gemm.fp32"]["median_abs_err_pct"], abs=0.1)
    assert "nvlink" in p.collectives


@pytest.mark.slow
def test_profile_for_another_device_is_refused(fitted):
    _, path = fitted
    r = _cli("predict-ops", "--system", "dgx-h100", "--model", "llama2-7b", "--tokens", "128",
             "--profile", str(path))
    assert r.returncode == 2 and "fitted on device 'cpu'" in r.stderr


def test_predict_ops_contract():
    r = _cli("predict-ops", "--system", "dgx-h100", "--model", "llama2-7b", "--tp", "2",
             "--tokens", "512", "--format", "json")
    ms = json.loads(r.stdout)
    assert list(ms)[:3] == ["emb", "input_layernorm", "attn_pre_proj"] and len(ms) == 10
    assert all(v > 0 for v in ms.values())
