"""Helpers for the hardening tests: run the CLI in-process as a user would, under a time limit."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator

import pytest

from sim.cli.main import main


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail (TimeoutError) instead of hanging when the body runs longer than ``seconds``."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def cli(monkeypatch, capsys, *args: str, limit_s: float = 60) -> tuple[int, str, str]:
    """``clustersim ARGS``: (exit code, stdout, stderr); a traceback fails the test."""
    monkeypatch.setattr(sys, "argv", ["clustersim", *map(str, args)])
    code = 0
    with time_limit(limit_s):
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err: str) -> str:
    """The single ``error: ...`` line of a refused input (and nothing that looks like a traceback)."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    errors = [ln for ln in lines if ln.startswith("error: ")]
    if len(errors) != 1:
        pytest.fail(f"expected one 'error:' line, got:\n{err}")
    return errors[0]
