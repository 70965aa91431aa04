"""Progress bars: on a terminal once work passes the delay, never in pipes or logs."""

from __future__ import annotations

import io
import sys

import numpy as np

from sim import progress as progress_mod
from sim.progress import Quiet, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_on_a_terminal_after_the_delay(monkeypatch):
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setattr(progress_mod, "DELAY_S", 0.0)
    assert list(progress(range(3), desc="work", unit="step")) == [0, 1, 2]
    assert "work:" in term.getvalue() and "/3 [" in term.getvalue()


def test_no_bar_before_the_delay(monkeypatch):
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert list(progress(range(3), desc="quick")) == [0, 1, 2]      # well under 2 s
    assert term.getvalue() == ""


def test_no_bar_in_a_pipe(monkeypatch):
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    monkeypatch.setattr(progress_mod, "DELAY_S", 0.0)
    list(progress(range(3), desc="work"))
    assert pipe.getvalue() == ""


def test_quiet_bar_counts_without_output():
    q = progress(total=10, quiet=True)
    assert isinstance(q, Quiet)
    with q as bar:
        bar.update(4)
    assert bar.n == 4


def test_run_shows_checkpoint_search_progress(monkeypatch):
    """The whole-run command's long part (the checkpoint-interval search) reports progress."""
    from sim.reliability import RunModel, best_interval
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setattr(progress_mod, "DELAY_S", 0.0)
    m = RunModel(step_s=1.0, total_steps=2000, every_steps=10, ckpt_block_s=5.0, ckpt_write_s=5.0,
                 load_s=5.0, restart_s=5.0, rates={"gpu": 1 / 500})
    best, curve = best_interval(m, 0, 2)
    assert "checkpoint intervals" in term.getvalue()
    assert best in curve and np.isfinite(curve[best])
