"""Shared CLI helpers: output formats and the one error path (message, exit code 2)."""

from __future__ import annotations

import sys
from enum import Enum
from typing import TYPE_CHECKING, Any

import typer

from hw_models.jsonio import dumps

if TYPE_CHECKING:
    import pandas as pd


class Format(str, Enum):
    table = "table"
    json = "json"


def fail(message: str) -> None:
    """Print one clear line to stderr and exit 2 (no traceback)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def emit(data: Any, fmt: Format, table: pd.DataFrame | str | None = None) -> None:
    if fmt is Format.json:
        typer.echo(dumps(data, indent=2))
    elif table is not None and not isinstance(table, str):     # a DataFrame
        typer.echo(table.to_string(index=False))
    else:
        typer.echo(table if table is not None else dumps(data, indent=2))
    sys.stdout.flush()


def fmt_s(x: float, width: int = 0) -> str:
    """Seconds for a table: 3 decimals in the everyday range, 4 significant digits outside it
    (a 1e-30 Gb/s NIC gives 2.755e+32 s, not a 33-digit number)."""
    text = f"{x:.3f}" if x == 0 or 1e-3 <= abs(x) < 1e6 else f"{x:.4g}"
    return text.rjust(width)
