"""Progress bars for long work: tqdm on stderr, shown only when the work has already taken
2 s (``delay``) and stderr is a terminal (``disable=None``), so quick commands, pipes, CI
logs and ``--format json`` stay clean."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

DELAY_S = 2.0


class Quiet:
    """A bar that never shows (work known to be short): same calls, no cost."""
    n = 0

    def update(self, k: int = 1) -> None:
        self.n += k

    def __enter__(self) -> Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "",
             unit: str = "it", quiet: bool = False) -> Any:
    """A tqdm bar over ``iterable`` (or a manual one of ``total`` steps); ``quiet``: none
    (for work too small to ever need one, where even creating a bar costs too much)."""
    if quiet:
        return iterable if iterable is not None else Quiet()
    from tqdm import tqdm  # ~30 ms to import: only when a bar may show
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, delay=DELAY_S,
                disable=None, leave=False, dynamic_ncols=True)
