"""clustersim what-if explorer: ``clustersim app`` (or ``streamlit run app/explorer.py``).

The sidebar picks a page from the registry in app/views; the scenario being explored
lives in session state and is shared by all pages.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run app/explorer.py` puts app/ (not the repository root) on sys.path.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from app.views import PAGES, by_title  # noqa: E402


def main() -> None:
    st.set_page_config(page_title="clustersim explorer", layout="wide")
    title = st.sidebar.radio("Page", [p.title for p in PAGES], key="page")
    st.sidebar.caption("clustersim: what-if simulation of large ML clusters")
    by_title(title).render()


main()
