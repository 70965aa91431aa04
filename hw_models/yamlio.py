"""One reader for user YAML files (scenarios, sweeps, profiles).

Every file a user hands us fails the same way: a missing file or malformed YAML becomes
one ClusterSimError naming the file and, when YAML knows it, the line.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from hw_models.errors import ClusterSimError


def load_packaged(text: str) -> Any:
    """Parse YAML shipped with the package (catalog, profiles, presets): libyaml's C parser
    where PyYAML has it (same result, ~10x faster on the profiles' bootstrap tables)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def read_packaged(package: str, *parts: str) -> Any:
    """The parsed content (``load_packaged``) of the YAML file at ``parts`` inside
    ``package`` (e.g. ``read_packaged("hw_models", "data", "gpus.yaml")``)."""
    return load_packaged(resources.files(package).joinpath(*parts).read_text())


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed content of ``path``; ``what`` names the file kind in messages."""
    path = Path(path)
    if path.is_dir():
        raise ClusterSimError(f"{what} file {str(path)!r} is a directory; give a YAML file")
    if not path.is_file():
        raise ClusterSimError(f"{what} file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ClusterSimError(f"{what} file {str(path)!r} is not UTF-8 text; give a YAML file") from None
    except OSError as exc:
        raise ClusterSimError(f"{what} file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise ClusterSimError(f"{path}: malformed YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ClusterSimError(f"{path}: malformed YAML{where}: {getattr(exc, 'problem', exc)}") from None


def check_writable(path: str | Path, what: str, example: str = "out.json") -> Path:
    """``path`` as an output file, or one ClusterSimError saying why it cannot be written
    (checked before the work, so that a long run does not end in a failed write)."""
    path = Path(path)
    parent = path.parent
    if path.is_dir():
        raise ClusterSimError(f"{what} {str(path)!r} is a directory; give a file name, "
                              f"e.g. {str(path / example)!r}")
    if parent.exists() and not parent.is_dir():
        raise ClusterSimError(f"{what} {str(path)!r}: {str(parent)!r} is a file, not a folder")
    if not parent.is_dir():
        raise ClusterSimError(f"{what} {str(path)!r}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ClusterSimError(f"{what} {str(path)!r} is not writable")
    return path


def check_writable_dir(path: str | Path, what: str) -> Path:
    """``path`` as an output folder (created if missing), or one ClusterSimError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ClusterSimError(f"{what} {str(path)!r} is a file; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ClusterSimError(f"{what} {str(path)!r}: cannot create the folder ({exc.strerror})") from None
    if not os.access(path, os.W_OK):
        raise ClusterSimError(f"{what} {str(path)!r} is not writable")
    return path
