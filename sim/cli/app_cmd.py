"""``clustersim app [--port N] [--headless]``: open the what-if explorer (Streamlit)."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import typer

from hw_models.errors import ClusterSimError


def explorer_path() -> str:
    return str(resources.files("app").joinpath("explorer.py"))


def register(app: typer.Typer) -> None:
    @app.command("app")
    def app_command(
        port: int = typer.Option(8501, "--port", help="local port to serve on"),
        headless: bool = typer.Option(False, "--headless", help="do not open a browser"),
    ) -> None:
        """Open the what-if explorer in the browser (streamlit run app/explorer.py)."""
        try:
            import streamlit  # noqa: F401
        except ImportError:
            raise ClusterSimError("the explorer needs streamlit: pip install 'clustersim[app]'") from None
        cmd = [sys.executable, "-m", "streamlit", "run", explorer_path(), "--server.port", str(port),
               "--server.headless", str(headless).lower(), "--browser.gatherUsageStats", "false"]
        raise typer.Exit(subprocess.call(cmd))
