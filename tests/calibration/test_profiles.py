import hashlib
from pathlib import Path

import pytest
import yaml

from calibration import build_profiles
from calibration.profile_match import mismatches
from calibration.uncertainty import predict_band
from calibration.vidur import LayerShape, predict_ops_ms
from hw_models import catalog
from hw_models.compute import ComputeModel
from hw_models.profile import band_profiles, load_builtin

PROFILES = Path(__file__).resolve().parents[2] / "calibration/profiles"


ROOT = PROFILES.parents[1]


@pytest.mark.parametrize("path", sorted(PROFILES.glob("*.yaml")), ids=lambda p: p.stem)
def test_profile_inputs_are_the_recorded_files(path):
    """Every file a built-in profile was fitted on is in the repository with the sha256 the
    profile recorded: the inputs did not change since the fit (the full rebuild of every
    profile from them runs in `make validate`: python -m calibration.build_profiles --check)."""
    inputs = yaml.safe_load(path.read_text())["inputs"]
    assert inputs
    for item in inputs:
        data = (ROOT / item["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == item["sha256"], item["path"]


@pytest.mark.slow
def test_a100_profile_regenerates():
    """One profile rebuilt end to end from its inputs (a100: the quickest to fit) matches
    the committed one (calibration/profile_match.py: within the drift of the fit
    across machines and library releases)."""
    committed = yaml.safe_load((PROFILES / "a100.yaml").read_text())
    assert mismatches(yaml.safe_load(yaml.safe_dump(build_profiles.build_a100())), committed) == []


def test_band_brackets_prediction():
    p, gpu = load_builtin("h100"), catalog.gpu("h100-sxm")
    fast, slow = band_profiles(p)
    assert fast.gemm["fp16"].eff_max > p.gemm["fp16"].eff_max > slow.gemm["fp16"].eff_max
    band = predict_band(lambda q: ComputeModel(gpu, q).gemm(2 * 4096**3, 6 * 4096**2, "bf16"), p)
    assert band.low < band.value < band.high
    assert band.high / band.low < 1.1        # bootstrap spread of 16704 points is narrow


def test_predict_ops_matches_vidur_h100():
    # Vidur h100_Llama-2-7b row 0: 4096 tokens, TP1; measured median ms.
    measured = {"attn_pre_proj": 0.584, "attn_post_proj": 0.193, "mlp_up_proj": 0.987,
                "mlp_down_proj": 0.441}
    cm = ComputeModel(catalog.gpu("h100-sxm"), load_builtin("h100"))
    ms = predict_ops_ms(cm, LayerShape(4096, 32, 32, 11008, True), 4096, 1)
    for op, t in measured.items():
        assert abs(ms[op] / t - 1) < 0.25, (op, ms[op], t)


def test_profile_match_tolerates_fit_drift_only():
    """A fitted value 0.5% off or a ~0 value at 1e-9 matches; 2% off, a changed string, a
    missing key or a p05 above its p95 does not (calibration/profile_match.py)."""
    base = {"name": "x", "gemm": {"fp16": {"eff_max": 0.8, "wave_exp": 0.0}},
            "uncertainty": {"gemm.fp16": {"eff_max": {"p05": 0.78, "p95": 0.82}}}}
    drift = {"name": "x", "gemm": {"fp16": {"eff_max": 0.804, "wave_exp": 1e-9}},
             "uncertainty": {"gemm.fp16": {"eff_max": {"p05": 0.70, "p95": 0.90}}}}
    assert mismatches(drift, base) == []
    assert mismatches({**drift, "gemm": {"fp16": {"eff_max": 0.816, "wave_exp": 0.0}}}, base)
    assert mismatches({**drift, "name": "y"}, base)
    assert mismatches({**drift, "gemm": {"fp16": {"eff_max": 0.8}}}, base)
    assert mismatches({**drift, "uncertainty": {"gemm.fp16": {"eff_max": {"p05": 0.9,
                                                                          "p95": 0.7}}}}, base)


@pytest.mark.parametrize("args, code", [(["--help"], 0), (["--bogus"], 2)])
def test_build_profiles_help_and_bad_flags_write_nothing(monkeypatch, args, code):
    """`python -m calibration.build_profiles --help` used to ignore the flag and rewrite every
    built-in profile; now argparse answers it (and refuses an unknown flag) first."""
    monkeypatch.setattr(build_profiles, "build_all",
                        lambda: pytest.fail("build_profiles fitted and wrote profiles"))
    with pytest.raises(SystemExit) as exc:
        build_profiles.main(args)
    assert exc.value.code == code
