"""The explorer's page registry: one module per page, each with TITLE and render().

A new feature adds its page by writing ``app/views/<name>.py`` and one entry here.
Pages import lazily so one page's optional engine cannot break the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    title: str
    module: str

    def render(self) -> None:
        mod = importlib.import_module(f"app.views.{self.module}")
        render: Callable[[], None] = mod.render
        render()


PAGES: tuple[Page, ...] = (
    Page("Scenario", "scenario"),
    Page("Results", "results"),
    Page("Compare", "compare"),
    Page("Sweep", "sweep"),
    Page("Collectives", "collectives"),
    Page("Inference", "inference"),
    Page("RL step", "rl"),
    Page("Trace replay", "replay"),
)


def by_title(title: str) -> Page:
    return next(p for p in PAGES if p.title == title)
