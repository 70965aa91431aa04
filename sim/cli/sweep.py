"""``clustersim sweep SWEEP.yaml --out results.parquet [--workers N] [--executor local|dask]
[--scheduler ADDR] [--resume] [--verify-top K] [--format table|json]``."""

from __future__ import annotations

from pathlib import Path

import typer

from hw_models.yamlio import check_writable
from sim.cli.common import Format, emit


def register(app: typer.Typer) -> None:
    @app.command("sweep")
    def sweep_command(
        file: Path = typer.Argument(..., help="sweep YAML: base scenario, plans: auto, axes"),
        out: Path = typer.Option(..., "--out", help="results Parquet (one row per configuration)"),
        workers: int = typer.Option(1, "--workers", min=1, help="worker processes / Dask workers"),
        executor: str = typer.Option("local", "--executor", help="local or dask"),
        scheduler: str = typer.Option(None, "--scheduler", help="Dask scheduler tcp://host:port"),
        resume: bool = typer.Option(False, "--resume", help="keep finished parts of a killed run"),
        verify_top: int = typer.Option(0, "--verify-top", min=0, help="DES on the K best plans"),
        chunk_size: int = typer.Option(1024, "--chunk-size", min=1, help="configurations per task"),
        max_configs: int = typer.Option(1_000_000, "--max-configs", min=1,
                                        help="refuse sweeps with more configurations than this"),
        format: Format = typer.Option(Format.table, "--format"),
    ) -> None:
        """Search parallelism plans and hardware: closed form over all, DES on the top K."""
        from sim.sweep import run, spec, summary

        check_writable(out, "--out", "results.parquet")
        sweep = spec.load(file)
        opts = run.Options(out=str(out), workers=workers, executor=executor, scheduler=scheduler,
                           resume=resume, verify_top=verify_top, chunk_size=chunk_size,
                           max_configs=max_configs)
        result = run.run(sweep, opts)
        emit(result, format, summary.table(result))
