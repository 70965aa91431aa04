"""One reader for user YAML files (scenarios, sweeps, profiles).

Every file a user hands us fails the same way: a missing file or malformed YAML becomes
one ClusterSimError naming the file and, when YAML knows it, the line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hw_models.errors import ClusterSimError


def load_packaged(text: str) -> Any:
    """Parse YAML shipped with the package (catalog, profiles, presets): libyaml's C parser
    where PyYAML has it (same result, ~10x faster on the profiles' bootstrap tables)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed content of ``path``; ``what`` names the file kind in messages."""
    path = Path(path)
    if not path.is_file():
        raise ClusterSimError(f"{what} file {str(path)!r} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ClusterSimError(f"{path}: malformed YAML{where}: {getattr(exc, 'problem', exc)}") from None
