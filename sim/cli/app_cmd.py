"""``clustersim app [--port N] [--host H] [--headless]``: open the what-if explorer (Streamlit).

Streamlit serves from a child process. The child dies with this one: SIGTERM, SIGINT and
SIGHUP are forwarded to it, it is stopped when this process leaves for any reason, and on
Linux the kernel sends it SIGTERM if this process is killed outright (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from importlib import resources
from pathlib import Path

import typer

from hw_models.errors import ClusterSimError
from sim.scenario import load

SCENARIO_ENV = "CLUSTERSIM_APP_SCENARIO"   # read by app.core
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PR_SET_PDEATHSIG = 1                        # linux/prctl.h


def explorer_path() -> str:
    return str(resources.files("app").joinpath("explorer.py"))


def check_address(host: str, port: int) -> None:
    """One clear line for a port out of range, a host that does not resolve, or a port in use."""
    if not 1 <= port <= 65535:
        raise ClusterSimError(f"--port {port}: a TCP port is 1-65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ClusterSimError(f"--host {host!r}: cannot resolve it ({exc.strerror})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            raise ClusterSimError(f"cannot listen on {host}:{port} ({exc.strerror}); pick "
                                  "another --port or --host") from None


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run_child(cmd: list[str], env: dict[str, str]) -> int:
    """Run ``cmd`` until it exits; signals to this process go to it; it never outlives us."""
    linux = sys.platform.startswith("linux")
    proc = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent if linux else None)

    def forward(signum, frame) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)
    old = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        return proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def register(app: typer.Typer) -> None:
    @app.command("app")
    def app_command(
        port: int = typer.Option(8501, "--port", help="port to serve on (1-65535)"),
        host: str = typer.Option("localhost", "--host", help="address to listen on; 0.0.0.0 "
                                 "opens the explorer to the network"),
        headless: bool = typer.Option(False, "--headless", help="do not open a browser"),
        scenario: Path = typer.Option(None, "--scenario", help="start from this scenario YAML"),
    ) -> None:
        """Open the what-if explorer in the browser (streamlit run app/explorer.py)."""
        try:
            import streamlit  # noqa: F401
        except ImportError:
            raise ClusterSimError("the explorer needs streamlit: pip install 'clustersim[app]'") from None
        check_address(host, port)
        env = dict(os.environ)
        if scenario is not None:
            load(scenario)                      # fail here, with exit 2, if it is invalid
            env[SCENARIO_ENV] = str(scenario.resolve())
        cmd = [sys.executable, "-m", "streamlit", "run", explorer_path(), "--server.port", str(port),
               "--server.address", host, "--server.headless", str(headless).lower(),
               "--server.showEmailPrompt", "false", "--browser.gatherUsageStats", "false"]
        raise typer.Exit(run_child(cmd, env))
