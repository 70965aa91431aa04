"""The scenario reference, generated from the pydantic models' field descriptions.

``rows()`` walks the Scenario model: one row per key (dotted path, type, default,
description), nested blocks after their parent. ``markdown()`` is ``clustersim schema``'s
reference; docs hold generated tables between ``<!-- schema: SECTION -->`` and
``<!-- /schema -->`` (``python -m sim.schema docs/*.md`` refreshes them, a test checks they
are current); ``json_schema()`` is pydantic's JSON Schema of a scenario file.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from hw_models.errors import ClusterSimError
from sim.scenario import Scenario


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through unions, Optional, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) if isinstance(a, str) else str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    value = field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "{...}"
    return "null" if value is None else repr(value)


def _label(key: str, sub: type[BaseModel], alternatives: int) -> str:
    """A block's section title; a union of blocks is told apart by its ``kind``."""
    kind = sub.model_fields.get("kind")
    return f"{key} (kind: {kind.default})" if alternatives > 1 and kind else key


def rows(model: type[BaseModel] = Scenario, prefix: str = "",
         section: str = "top level") -> list[dict[str, str]]:
    """One row per key of ``model`` and of the blocks it nests, depth first; ``section``
    is the top-level block a key belongs to (one per kind for ``workload``)."""
    out: list[dict[str, str]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        out.append({"section": section, "key": key, "type": _type_name(field.annotation),
                    "default": _default(field), "description": field.description or ""})
        subs = _models(field.annotation)
        for sub in subs:
            sub_section = _label(key, sub, len(subs)) if section == "top level" else section
            out += rows(sub, f"{key}.", sub_section)
    return out


def sections() -> list[str]:
    return list(dict.fromkeys(r["section"] for r in rows()))


def table(section: str) -> str:
    """The Markdown table of one section's keys."""
    if section not in sections():
        raise ClusterSimError(f"no scenario section {section!r}; allowed: {', '.join(sections())}")
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for r in rows():
        if r["section"] == section:
            cells = [f"`{r['key']}`", r["type"].replace("|", "\\|"), f"`{r['default']}`",
                     r["description"].replace("|", "\\|")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown() -> str:
    """The key reference: one Markdown table per top-level block."""
    return "\n".join(f"### {s}\n\n{table(s)}" for s in sections())


# A generated table in a doc: <!-- schema: SECTION --> ... <!-- /schema -->
BLOCK = re.compile(r"(<!-- schema: (?P<section>[^>]+?) -->\n)(?P<body>.*?)(<!-- /schema -->)", re.S)


def update_docs(text: str) -> str:
    """``text`` with every generated block refreshed from the models."""
    return BLOCK.sub(lambda m: m.group(1) + table(m.group("section")) + m.group(4), text)


def json_schema() -> dict[str, Any]:
    return Scenario.model_json_schema()


def main(paths: list[str]) -> None:
    """``python -m sim.schema docs/*.md``: rewrite the generated key tables in place."""
    for path in paths:
        with open(path) as f:
            text = f.read()
        new = update_docs(text)
        if new != text:
            with open(path, "w") as f:
                f.write(new)
            print(f"updated {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
