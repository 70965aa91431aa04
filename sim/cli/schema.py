"""``clustersim schema``: the scenario keys with types, defaults and descriptions."""

from __future__ import annotations

import json
from enum import Enum

import typer


class SchemaFormat(str, Enum):
    markdown = "markdown"
    json = "json"


def register(app: typer.Typer) -> None:
    @app.command("schema")
    def schema_command(
            format: SchemaFormat = typer.Option(SchemaFormat.markdown, "--format",
                                                help="markdown tables or JSON Schema")) -> None:
        """Scenario file reference: every key, its type, default and meaning."""
        from sim import schema
        if format is SchemaFormat.json:
            typer.echo(json.dumps(schema.json_schema(), indent=2))
        else:
            typer.echo(schema.markdown(), nl=False)
