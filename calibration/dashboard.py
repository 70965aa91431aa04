"""One accuracy dashboard over every validation suite (``clustersim validate all``).

A suite is one file: a module ``calibration/validate_<topic>.py`` that defines ``SUITE``
(its name) and ``dashboard_rows()`` returning one dict per published measurement::

    {"suite", "name", "predicted", "published", "error_pct", "unit",
     "kind": "time" | "rate",           # a rate (TFLOP/s, GB/s) is faster when higher
     "low", "high"}                     # optional: the prediction's bootstrap band

The dashboard finds suites by file name, refuses two with the same name, and adds to
every row whether its prediction band covers the published value. The band is the
bootstrap band (where the suite has one) widened by the residuals of the *other* suites
(leave-one-suite-out: a suite never calibrates its own band), see ``residual_band``.
Errors are always predicted vs published, bad rows included.

    python -m calibration.dashboard                     # Markdown
    python -m calibration.dashboard --readme README.md  # rewrite the README's section
    python -m calibration.dashboard --write-band        # store the pooled residual band
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import calibration
from hw_models.errors import ClusterSimError
from hw_models.profile import RESIDUAL_BAND_PATH, ResidualBand

LEVEL = 0.8                    # nominal coverage of the printed band
COLUMNS = ["suite", "name", "predicted", "published", "error_pct", "covered", "low", "high", "unit"]
README_BEGIN, README_END = "<!-- accuracy:begin -->", "<!-- accuracy:end -->"


@dataclass(frozen=True)
class Suite:
    name: str
    module: str
    rows: Callable[[], list[dict]]


def discover(package=calibration) -> dict[str, Suite]:
    """Every ``validate_*`` module of ``package`` that defines SUITE and dashboard_rows."""
    found: dict[str, Suite] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not info.name.startswith("validate_"):
            continue
        mod = importlib.import_module(f"{package.__name__}.{info.name}")
        name, fn = getattr(mod, "SUITE", None), getattr(mod, "dashboard_rows", None)
        if name is None or fn is None:
            continue
        if name in found:
            raise ClusterSimError(f"validation suite {name!r} is defined twice: "
                                  f"{found[name].module} and {mod.__name__}")
        found[name] = Suite(name, mod.__name__, fn)
    return found


def collect(suites: Iterable[Suite]) -> pd.DataFrame:
    frames = []
    for s in suites:
        df = pd.DataFrame(s.rows())
        if df.empty:          # a suite with nothing to judge on the data at hand
            continue
        df["suite"] = s.name
        frames.append(df)
    if not frames:
        raise ClusterSimError("no validation rows: every selected suite came back empty")
    df = pd.concat(frames, ignore_index=True)
    for col, default in (("low", np.nan), ("high", np.nan), ("kind", "time"), ("unit", ""),
                         ("group", None)):
        if col not in df:
            df[col] = default
    df["error_pct"] = 100 * (df.predicted / df.published - 1)
    return df


# ---- residuals and bands (in time space: published time / predicted time) -------------

def log_residual(df: pd.DataFrame) -> np.ndarray:
    """ln(published time / predicted time): > 0 where the prediction is too fast."""
    r = np.log(df.published.to_numpy(float) / df.predicted.to_numpy(float))
    return np.where(df.kind.to_numpy() == "rate", -r, r)


def weighted_quantiles(x: np.ndarray, w: np.ndarray, qs: Iterable[float]) -> list[float]:
    """Quantiles of a weighted sample (midpoint rule on the sorted cumulative weights)."""
    order = np.argsort(x)
    x, w = x[order], w[order]
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    return [float(np.interp(q, cdf, x)) for q in qs]


def suite_weights(suites: np.ndarray) -> np.ndarray:
    """Each suite weighs the same, however many rows it has."""
    names, counts = np.unique(suites, return_counts=True)
    per = dict(zip(names, 1.0 / counts, strict=True))
    return np.array([per[s] for s in suites])


def residual_band(df: pd.DataFrame, level: float = LEVEL) -> float:
    """Half-width q of the band in ln(time): the ``level`` quantile of |ln(published /
    predicted time)|, every suite weighted equally. Symmetric on purpose: the bias of
    one suite (training too fast, say) does not carry over to another."""
    return weighted_quantiles(np.abs(log_residual(df)), suite_weights(df.suite.to_numpy()),
                              (level,))[0]


def boot_ratio(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap band as time ratios to the prediction (1, 1 where a suite has none)."""
    pred = df.predicted.to_numpy(float)
    lo = df.low.fillna(df.predicted).to_numpy(float) / pred
    hi = df.high.fillna(df.predicted).to_numpy(float) / pred
    rate = df.kind.to_numpy() == "rate"
    return np.where(rate, 1 / hi, lo), np.where(rate, 1 / lo, hi)


def apply_bands(df: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """Leave-one-suite-out: each suite's band is its bootstrap band widened by the
    residual half-width of the *other* suites; ``covered`` says whether it holds the
    published value."""
    df = df.copy()
    b_lo, b_hi = boot_ratio(df)
    r = log_residual(df)
    lo, hi = np.empty(len(df)), np.empty(len(df))
    for name in df.suite.unique():
        mine = (df.suite == name).to_numpy()
        q = residual_band(df[~mine], level) if (~mine).any() else 0.0
        lo[mine], hi[mine] = b_lo[mine] * math.exp(-q), b_hi[mine] * math.exp(q)
    df["covered"] = (np.log(lo) <= r + 1e-12) & (r <= np.log(hi) + 1e-12)
    rate = df.kind.to_numpy() == "rate"
    pred = df.predicted.to_numpy(float)
    df["low"] = np.where(rate, pred / hi, pred * lo)
    df["high"] = np.where(rate, pred / lo, pred * hi)
    return df


def stats(g: pd.DataFrame) -> dict:
    err = g.error_pct.abs()
    worst = g.loc[err.idxmax()]
    gm = float(np.expm1(np.mean(np.abs(log_residual(g)))) * 100)
    return {"rows": len(g), "median_abs_error_pct": round(float(err.median()), 1),
            "p90_abs_error_pct": round(float(err.quantile(0.9)), 1),
            "worst_error_pct": round(float(worst.error_pct), 1), "worst_row": worst["name"],
            "geomean_abs_error_pct": round(gm, 1), "coverage": round(float(g.covered.mean()), 3)}


def summarize(df: pd.DataFrame) -> dict[str, dict]:
    """Per suite; rows that name a ``group`` (a sweep, a GPU and metric) also get the
    same figures per group under ``groups``."""
    out = {}
    for name, g in df.groupby("suite", sort=False):
        out[name] = stats(g)
        grouped = g[g.group.notna()] if "group" in g else g.iloc[0:0]
        if len(grouped):
            out[name]["groups"] = {k: stats(v) for k, v in grouped.groupby("group", sort=False)}
    return out


def coverage(df: pd.DataFrame) -> dict[str, float]:
    per_suite = df.groupby("suite").covered.mean()
    return {"level": LEVEL, "rows": round(float(df.covered.mean()), 3),
            "suite_mean": round(float(per_suite.mean()), 3)}


def run(suites: dict[str, Suite] | None = None, only: list[str] | None = None) -> dict:
    suites = suites or discover()
    if only:
        unknown = sorted(set(only) - set(suites))
        if unknown:
            raise ClusterSimError(f"unknown suite(s) {', '.join(unknown)}; allowed: "
                                  f"{', '.join(sorted(suites))}")
        suites = {k: v for k, v in suites.items() if k in only}
    return result_of(collect(suites.values()))


def result_of(rows: pd.DataFrame) -> dict:
    df = apply_bands(rows)
    return {"rows": df[COLUMNS].round(4).to_dict("records"), "suites": summarize(df),
            "coverage": coverage(df),
            "band": {"level": LEVEL, "log_half_width": round(residual_band(df), 4),
                     "suites": sorted(df.suite.unique())}}


# ---- output --------------------------------------------------------------------------

def summary_markdown(result: dict) -> str:
    lines = ["| suite | rows | median abs err | p90 abs err | worst (row) | band coverage |",
             "|---|---:|---:|---:|---|---:|"]
    for name, s in result["suites"].items():
        lines.append(f"| {name} | {s['rows']} | {s['median_abs_error_pct']:.1f}% | "
                     f"{s['p90_abs_error_pct']:.1f}% | {s['worst_error_pct']:+.1f}% "
                     f"({s['worst_row']}) | {s['coverage']:.0%} |")
    for name, s in result["suites"].items():
        for k, gs in s.get("groups", {}).items():
            lines.append(f"| {name}: {k} | {gs['rows']} | {gs['median_abs_error_pct']:.1f}% | "
                         f"{gs['p90_abs_error_pct']:.1f}% | {gs['worst_error_pct']:+.1f}% "
                         f"(geomean {gs['geomean_abs_error_pct']:.1f}%) | {gs['coverage']:.0%} |")
    c, b = result["coverage"], result["band"]
    lines.append("")
    lines.append(f"Nominal {c['level']:.0%} band: covers {c['rows']:.0%} of all rows "
                 f"({c['suite_mean']:.0%} averaged over suites). Band = bootstrap band "
                 f"widened by x/ {math.exp(b['log_half_width']):.3f} in time (all suites' "
                 "residuals; each suite's own rows are judged with the other suites' only).")
    return "\n".join(lines)


def rows_markdown(result: dict) -> str:
    lines = ["| suite | measurement | predicted | published | error | band | covered |",
             "|---|---|---:|---:|---:|---|:-:|"]
    for r in result["rows"]:
        lines.append(f"| {r['suite']} | {r['name']} | {r['predicted']:.4g} | "
                     f"{r['published']:.4g} {r['unit']} | {r['error_pct']:+.1f}% | "
                     f"[{r['low']:.4g}, {r['high']:.4g}] | {'yes' if r['covered'] else 'no'} |")
    return "\n".join(lines)


def markdown(result: dict) -> str:
    return "\n".join(["## Accuracy by suite", "", summary_markdown(result), "",
                      "## Every measurement", "", rows_markdown(result)])


def rewrite_readme(path: Path, result: dict) -> None:
    text = path.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise ClusterSimError(f"{path} has no {README_BEGIN} ... {README_END} section")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    body = ("\n<!-- generated by `python -m calibration.dashboard --readme README.md`; "
            "do not edit by hand -->\n" + summary_markdown(result) + "\n")
    path.write_text(head + README_BEGIN + body + README_END + tail)


def write_band(result: dict, path: Path = RESIDUAL_BAND_PATH) -> None:
    b = result["band"]
    data = ResidualBand(level=b["level"], log_half_width=b["log_half_width"],
                        rows=len(result["rows"]), suites=b["suites"],
                        fitted_by="python -m calibration.dashboard --write-band "
                                  "(weighted quantile of |ln(published/predicted time)|, "
                                  "every suite weighted equally)")
    path.write_text(yaml.safe_dump(data.model_dump(), sort_keys=False))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--format", choices=["markdown", "json"], default="markdown")
    ap.add_argument("--readme", type=Path)
    ap.add_argument("--write-band", action="store_true")
    args = ap.parse_args(argv)
    result = run()
    if args.readme:
        rewrite_readme(args.readme, result)
    if args.write_band:
        write_band(result)
    print(json.dumps(result, indent=2) if args.format == "json" else markdown(result))


if __name__ == "__main__":
    main()
