"""Figures for docs/reliability.md, drawn from the rows benchmarks/reliability_sweep.py measures.

Functions take the measured rows (records, not plots) and write one small PNG each.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")                       # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {"figsize": (6.4, 3.8), "dpi": 100}


def interval_plot(rows: list[dict], young_min: float, daly: list[tuple[float, float]],
                  out: Path, title: str) -> Path:
    """Goodput vs checkpoint interval (minutes, log axis), sync vs async, Young marked."""
    fig, ax = plt.subplots(**STYLE)
    for mode, mark in (("sync", "o-"), ("async", "s-")):
        pts = sorted((r["minutes"], r["goodput"], r["se"]) for r in rows if r["mode"] == mode)
        x, y, e = zip(*pts, strict=True)
        ax.errorbar(x, y, yerr=[2 * v for v in e], fmt=mark, ms=4, capsize=2,
                    label=f"{mode} (simulated, ±2 se)")
    dx, dy = zip(*daly, strict=True)
    ax.plot(dx, dy, "k:", lw=1, label="sync, Daly closed form")
    ax.axvline(young_min, color="grey", ls="--", lw=1)
    ax.text(young_min * 1.05, 0.99, f"Young optimum sqrt(2CM)\n= {young_min:.0f} min (sync)",
            fontsize=8, color="dimgrey", va="top", transform=ax.get_xaxis_transform())
    ax.set_xscale("log")
    ax.set_xlabel("checkpoint interval (minutes of training)")
    ax.set_ylabel("goodput (useful / wall time)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower center")
    return _save(fig, out)


def straggler_plot(rows: list[dict], out: Path, title: str) -> Path:
    """Goodput vs per-node straggler fraction (log axis) for each straggler model."""
    fig, ax = plt.subplots(**STYLE)
    for label in dict.fromkeys(r["model"] for r in rows):
        pts = sorted((r["fraction"], r["goodput"]) for r in rows
                     if r["model"] == label and r["fraction"] > 0)
        x, y = zip(*pts, strict=True)
        ax.plot(x, y, "o-", ms=4, label=label)
    base = next(r["goodput"] for r in rows if r["fraction"] == 0)
    ax.axhline(base, color="grey", ls="--", lw=1, label="no stragglers")
    ax.set_xscale("log")
    ax.set_xlabel("straggler fraction (per node)")
    ax.set_ylabel("goodput (useful / wall time)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, out)


def _save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=STYLE["dpi"])
    plt.close(fig)
    return out
