"""Where the published reference data lives (calibration/reference/) and how the fitters
read it: a CSV with ``#`` header lines, and a file's path and sha256 for a profile's
``inputs``."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import pandas as pd

REF = Path(str(resources.files("calibration").joinpath("reference")))


def reference_csv(rel: str) -> pd.DataFrame:
    return pd.read_csv(REF / rel, comment="#")


def reference_sha(rel: str) -> dict[str, str]:
    return {"path": f"calibration/reference/{rel}",
            "sha256": hashlib.sha256((REF / rel).read_bytes()).hexdigest()}
