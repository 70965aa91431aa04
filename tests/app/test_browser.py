"""End-to-end: `clustersim app` serves the explorer; headless Chromium (Debian's package,
driven by Playwright) changes the node count and sees the GPU count and throughput change.
A screenshot goes to $TMPDIR (or tests/artifacts with CLUSTERSIM_ARTIFACTS=1)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.app.test_pages import SMALL

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
pw = pytest.importorskip("playwright.sync_api", reason="playwright is not installed; run .ci/install-browser.sh")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="chromium is not installed; run .ci/install-browser.sh")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    scenario = tmp_path / "small.yaml"
    scenario.write_text(yaml.safe_dump(SMALL))
    port = free_port()
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli.main", "app", "--headless", "--port",
                             str(port), "--scenario", str(scenario)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail("the explorer did not come up within 30 s")
        yield url
    finally:
        proc.terminate()                # forwarded to the Streamlit child (sim/cli/app_cmd.py)
        try:
            proc.wait(timeout=20)
        finally:                        # whatever happened, nothing of the group survives
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def metric_value(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label)
    return box.locator('[data-testid="stMetricValue"]').inner_text(timeout=30_000)


def test_change_nodes_in_browser(server):
    shots = ROOT / "tests/artifacts" if os.environ.get("CLUSTERSIM_ARTIFACTS") else Path(tempfile.gettempdir())
    shots.mkdir(parents=True, exist_ok=True)
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server)
        assert metric_value(page, "GPUs") == "16"
        tokens = metric_value(page, "Tokens/s")
        nodes = page.get_by_label("Nodes")
        nodes.fill("4")
        nodes.press("Enter")
        page.wait_for_function(
            """() => [...document.querySelectorAll('[data-testid="stMetric"]')].some(
                   m => m.innerText.includes('GPUs') && m.innerText.includes('32'))""",
            timeout=30_000)
        assert metric_value(page, "Tokens/s") != tokens
        page.screenshot(path=str(shots / "explorer_scenario.png"), full_page=True)
        browser.close()
    assert (shots / "explorer_scenario.png").stat().st_size > 10_000
