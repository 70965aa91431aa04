"""Explorer page latency: first answer vs the same question again (st.cache_data).

    PYTHONPATH=. python benchmarks/app_pages.py

Each page of the explorer runs under streamlit's AppTest with its defaults (the default
scenario: GPT-3 175B on 1024 H100s; the Sweep page runs its default tp x pp sweep on it)
after clearing the cache; then the script reruns unchanged, as a repeated question.
Prints seconds for both.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

ENTRY = str(Path(__file__).resolve().parents[1] / "app" / "explorer.py")
PAGES = ["Scenario", "Results", "Compare", "Sweep", "Collectives", "Inference", "Trace replay"]


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def page_times(title: str) -> tuple[float, float]:
    st.cache_data.clear()
    at = AppTest.from_file(ENTRY, default_timeout=600)
    at.session_state["page"] = title
    if title == "Sweep":
        at.run()
        first = timed(lambda: at.button[0].click().run())
        again = timed(lambda: at.button[0].click().run())
    else:
        first = timed(at.run)
        again = timed(at.run)
    if at.exception:
        raise RuntimeError(f"{title}: {at.exception}")
    return first, again


def main() -> None:
    print(f"{'page':14s} {'first s':>8s} {'repeat s':>9s}")
    for title in PAGES:
        first, again = page_times(title)
        print(f"{title:14s} {first:8.2f} {again:9.2f}")


if __name__ == "__main__":
    main()
