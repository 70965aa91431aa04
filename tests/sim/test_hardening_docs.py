"""User docs and shipped files say what the simulator does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sim import scenario
from sim.simulate import simulate

ROOT = Path(__file__).resolve().parents[2]


def test_llama3_scenario_header_states_what_it_simulates():
    path = ROOT / "scenarios/llama3_405b_run.yaml"
    header = path.read_text().split("cluster:")[0]
    step = float(re.search(r"~([\d.]+) s per step", header).group(1))
    tflops = float(re.search(r"~(\d+) model TFLOP/s per GPU", header).group(1))
    mfu = float(re.search(r"MFU ~(\d+)%", header).group(1))
    res = simulate(scenario.load(path).model_copy(update={"run": None}))
    assert res.iteration_time_s == pytest.approx(step, rel=0.01)
    assert res.tflops_per_gpu == pytest.approx(tflops, rel=0.01)
    assert 100 * res.mfu == pytest.approx(mfu, abs=0.5)


@pytest.mark.parametrize("doc", ["calibration.md", "inference.md", "reliability.md", "app.md",
                                 "replay.md", "sweeps.md", "fabric.md"])
def test_user_docs_carry_no_working_notes(doc):
    text = (ROOT / "docs" / doc).read_text()
    for note in ("this session", "the lead", "helpers'", "left to the", "../shared/",
                 "Known issue"):
        assert note not in text, f"docs/{doc}: {note!r}"


def test_readme_points_inside_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "../shared/DESIGN.md" not in readme and (ROOT / "docs/architecture.md").is_file()
