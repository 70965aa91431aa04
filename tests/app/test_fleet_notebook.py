"""The fleet time/energy/cost study executes clean in quick mode and ships its outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
NB = Path(__file__).resolve().parents[2] / "notebooks" / "fleet_time_energy_cost.ipynb"


def test_fleet_notebook_runs_clean(monkeypatch):
    monkeypatch.setenv("CLUSTERSIM_NB_QUICK", "1")
    nb = nbformat.read(NB, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NB.parent)}}).execute()
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if o.output_type == "error"]
    committed = nbformat.read(NB, as_version=4)
    printed = "".join(o.get("text", "") for c in committed.cells if c.cell_type == "code"
                      for o in c.outputs)
    for fleet in ("H100", "H200", "B200", "GB200 NVL72", "MI300X", "H100 + B200"):
        assert f"{fleet} " in printed
