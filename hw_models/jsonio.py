"""JSON for users: strict JSON, never ``NaN`` or ``Infinity`` (which ``json.dumps`` writes by
default, and which ``jq``, JavaScript and most parsers reject). A missing or undefined number
(NaN, an infinite bound) is written as ``null``. Every JSON the project writes goes through
``dumps``."""

from __future__ import annotations

import json
import math
from typing import Any


def clean(x: Any) -> Any:
    """``x`` with NaN/inf floats -> None, numpy scalars/arrays and DataFrames -> plain Python."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k) if not isinstance(k, str | int | float | bool) and k is not None else k:
                clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [clean(v) for v in x]
    if hasattr(x, "to_dict") and hasattr(x, "columns"):          # pandas DataFrame
        return clean(x.to_dict(orient="records"))
    if hasattr(x, "tolist"):                                      # numpy array or scalar
        return clean(x.tolist())
    if hasattr(x, "item"):
        return clean(x.item())
    if x is None or isinstance(x, str | int | bool):
        return x
    if _is_na(x):                                                 # pandas NA / NaT
        return None
    return str(x)


def _is_na(x: Any) -> bool:
    import pandas as pd
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def dumps(x: Any, **kw: Any) -> str:
    """Strict JSON text of ``x`` (see ``clean``)."""
    return json.dumps(clean(x), allow_nan=False, **kw)
