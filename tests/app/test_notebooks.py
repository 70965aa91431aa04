"""The study notebooks execute clean (nbclient) with CLUSTERSIM_NB_QUICK=1: fewer points."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow   # runs in CI; `make test-fast` skips it

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
NB = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.parametrize("name", ["scaling_175b_fabrics.ipynb", "systems_time_cost.ipynb"])
def test_notebook_runs_clean(name, monkeypatch):
    monkeypatch.setenv("CLUSTERSIM_NB_QUICK", "1")
    nb = nbformat.read(NB / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NB)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    # The committed copy carries its outputs (full settings), including the conclusions' table.
    committed = nbformat.read(NB / name, as_version=4)
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert all(c.outputs for c in code[1:])      # every cell after the imports shows something
