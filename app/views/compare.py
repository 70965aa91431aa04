"""Compare page: the current scenario against variants (one override line each), with deltas."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import core
from hw_models.errors import ClusterSimError

TITLE = "Compare"
EXAMPLE = "cluster.network.oversubscription=4\nworkload.recompute=full"


def variants(text: str) -> list[tuple[str, list[str]]]:
    """One variant per non-empty line: space-separated ``key.path=value`` overrides."""
    return [(line.strip(), line.split()) for line in text.splitlines() if line.strip()]


def table(base: dict, rows: list[tuple[str, list[str]]]) -> tuple[pd.DataFrame, list[str]]:
    """Metrics of base and each variant side by side, with % deltas against the base."""
    base_m = core.metrics(core.run(base))
    cols, errors = {"base": base_m}, []
    for label, overrides in rows:
        try:
            m = core.metrics(core.run(core.with_overrides(base, overrides)))
        except ClusterSimError as exc:
            errors.append(f"{label}: {exc}")
            continue
        cols[label] = m
        cols[f"Δ% {label}"] = {k: 100 * (v / base_m[k] - 1) if base_m.get(k) else float("nan")
                               for k, v in m.items()}
    return pd.DataFrame(cols), errors


def render() -> None:
    st.title("Compare")
    st.caption("Change one thing, see what moves. Each line is a variant of the current "
               "scenario, written as the CLI's --set overrides (space-separated).")
    text = st.text_area("Variants", EXAMPLE, key="cmp_variants", height=120)
    try:
        df, errors = table(core.current(), variants(text))
    except ClusterSimError as exc:
        st.error(f"Invalid scenario: {core.plain(exc)}")
        return
    for err in errors:
        st.warning(core.plain(err))
    st.dataframe(df.style.format(core.number).format(
        lambda v: "" if v != v else f"{v:+.1f}%", subset=[c for c in df if c.startswith("Δ%")]),
        width="stretch")
