"""`clustersim simulate` says how the part is calibrated: a part without its own
microbenchmarks runs at its peaks with Hopper's fitted efficiencies, and the line says so."""

import pytest
import yaml

from tests.sim.hardening_helpers import cli


@pytest.mark.parametrize("system, words, estimate", [
    ("mi300x-8", "roofline-assumed (profile h100): mi300x peaks with efficiencies fitted on "
                 "h100-sxm", True),
    ("dgx-h100", "fitted (profile h100)", False),
])
def test_calibration_line(tmp_path, monkeypatch, capsys, system, words, estimate):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"cluster": {"system": system, "nodes": 1},
                                 "workload": {"model": "megatron-1.7b", "global_batch": 8,
                                              "parallel": {"tp": 8}}}))
    code, out, err = cli(monkeypatch, capsys, "simulate", f)
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith("calibration"))
    assert words in line and ("an estimate" in line) == estimate
