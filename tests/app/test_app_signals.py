"""`clustersim app` takes its Streamlit child with it: SIGTERM to the parent stops both, and
it listens on localhost unless --host says otherwise."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def wait_up(url: str, proc: subprocess.Popen) -> None:
    for _ in range(240):
        if proc.poll() is not None:
            pytest.fail(f"clustersim app exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            return
        except OSError:
            time.sleep(0.25)
    pytest.fail("the explorer did not come up within 60 s")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_the_streamlit_child():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli.main", "app", "--headless",
                             "--port", str(port)], cwd=ROOT, start_new_session=True,
                            env=os.environ | {"PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(f"http://127.0.0.1:{port}", proc)
        kids = children(proc.pid)
        assert kids, "the explorer runs in a child process"
        # localhost only: the server is not bound to every interface
        listening = Path("/proc/net/tcp").read_text() + Path("/proc/net/tcp6").read_text()
        local = f":{port:04X} "
        assert any(local in ln and ln.split()[1].startswith(("0100007F", "0000000000000000FFFF0000"
                   "0100007F", "00000000000000000000000001000000")) for ln in listening.splitlines())
        assert not any(ln.split()[1] == f"00000000:{port:04X}" for ln in listening.splitlines()[1:])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) is not None
        deadline = time.time() + 20
        while any(alive(k) for k in kids) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(alive(k) for k in kids), "Streamlit outlived clustersim app"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
