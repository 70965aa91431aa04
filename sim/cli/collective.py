"""``clustersim collective``: an nccl-tests look-alike on the flow model."""

from __future__ import annotations

import typer

from sim.cli.common import Format, emit
from sim.network.nccl_tests import OPS, parse_size, sweep


def register(app: typer.Typer) -> None:
    @app.command("collective")
    def collective_command(
            system: str = typer.Option("dgx-h100", "--system"),
            nodes: int = typer.Option(1, "--nodes"),
            gpus: int = typer.Option(None, "--gpus", help="GPUs in the group (default: all)"),
            op: str = typer.Option("all_reduce", "--op", help=", ".join(OPS)),
            algo: str = typer.Option(None, "--algo", help="force an algorithm (NCCL_ALGO)"),
            proto: str = typer.Option(None, "--proto", help="LL, LL128 or Simple (NCCL_PROTO)"),
            min_bytes: str = typer.Option("8", "--min-bytes"),
            max_bytes: str = typer.Option("8G", "--max-bytes"),
            format: Format = typer.Option(Format.table, "--format")) -> None:
        """Predicted nccl-tests sweep: sizes double from --min-bytes to --max-bytes."""
        proto_n = {"ll": "LL", "ll128": "LL128", "simple": "Simple"}.get((proto or "").lower(), proto)
        df = sweep(system, nodes, gpus, op, algo.lower() if algo else None, proto_n,
                   parse_size(min_bytes), parse_size(max_bytes))
        emit(df.to_dict(orient="records"), format, df)
