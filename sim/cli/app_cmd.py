"""``clustersim app [--port N] [--headless]``: open the what-if explorer (Streamlit)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import typer

from hw_models.errors import ClusterSimError
from sim.scenario import load

SCENARIO_ENV = "CLUSTERSIM_APP_SCENARIO"   # read by app.core


def explorer_path() -> str:
    return str(resources.files("app").joinpath("explorer.py"))


def register(app: typer.Typer) -> None:
    @app.command("app")
    def app_command(
        port: int = typer.Option(8501, "--port", help="local port to serve on"),
        headless: bool = typer.Option(False, "--headless", help="do not open a browser"),
        scenario: Path = typer.Option(None, "--scenario", help="start from this scenario YAML"),
    ) -> None:
        """Open the what-if explorer in the browser (streamlit run app/explorer.py)."""
        try:
            import streamlit  # noqa: F401
        except ImportError:
            raise ClusterSimError("the explorer needs streamlit: pip install 'clustersim[app]'") from None
        env = dict(os.environ)
        if scenario is not None:
            load(scenario)                      # fail here, with exit 2, if it is invalid
            env[SCENARIO_ENV] = str(scenario.resolve())
        cmd = [sys.executable, "-m", "streamlit", "run", explorer_path(), "--server.port", str(port),
               "--server.headless", str(headless).lower(), "--browser.gatherUsageStats", "false"]
        raise typer.Exit(subprocess.call(cmd, env=env))
