"""``clustersim validate long-context | fp8 | dense``: modern training runs, predicted vs
published with the error of every row, skipped rows with their reason."""

from __future__ import annotations

import typer

from sim.cli.common import Format, emit


def _text(rows, summary: dict, extra: str = "") -> str:
    from calibration.validate_modern import table
    med, mx = summary["median_abs_error_pct"], summary["max_abs_error_pct"]
    line = (f"\n\n{summary['compared']} rows compared, {summary['skipped']} skipped, "
            f"{summary['errors']} errors; median |error| "
            f"{'-' if med is None else f'{med:.1f}%'}   max |error| "
            f"{'-' if mx is None else f'{mx:.1f}%'}   rows over 10%: {summary['rows_over_10pct']}")
    return table(rows) + line + extra


def register_modern(app: typer.Typer) -> None:
    @app.command("long-context")
    def long_context(format: Format = typer.Option(Format.table, "--format"),
                     band: bool = typer.Option(False, "--band", help="also the profile's low/high")) -> None:
        """NeMo long-sequence runs with context parallelism and TorchTitan CP sweeps."""
        from calibration.validate_long_context import rows, summarize
        result = rows(band)
        s = summarize(result)
        emit({"rows": result, "summary": s}, format, _text(result, s))

    @app.command("fp8")
    def fp8(format: Format = typer.Option(Format.table, "--format"),
            band: bool = typer.Option(False, "--band", help="also the profile's low/high")) -> None:
        """BF16/FP8 pairs and FP8/MXFP8/NVFP4 recipes on H100, B200, GB200."""
        import pandas as pd

        from calibration.validate_fp8 import pairs, rows, summarize
        result = rows(band)
        s = summarize(result)
        pr = pairs(result)
        h = s["h100"]
        extra = (f"\nH100 rows: {h['compared']} compared, median |error| "
                 f"{h['median_abs_error_pct']:.1f}%\n\nFP8/BF16 speed-up (points = predicted - "
                 f"published):\n" + pd.DataFrame(pr).drop(columns="suite").to_string(index=False))
        emit({"rows": result, "pairs": pr, "summary": s}, format, _text(result, s, extra))

    @app.command("schedules")
    def schedules(format: Format = typer.Option(Format.table, "--format"),
                  band: bool = typer.Option(False, "--band", help="also the profile's low/high")) -> None:
        """TorchTitan's 405B with 1F1B and interleaved 1F1B (the analytic rows are tests)."""
        from calibration.validate_schedules import rows, summarize
        result = rows(band)
        s = summarize(result)
        r = s["ratio"]
        extra = "" if r is None else (f"\ninterleaved / 1F1B throughput: predicted {r['predicted']}, "
                                      f"published {r['published']} ({r['points']:+.1f} points)")
        emit({"rows": result, "summary": s}, format, _text(result, s, extra))

    @app.command("dense")
    def dense(format: Format = typer.Option(Format.table, "--format"),
              band: bool = typer.Option(False, "--band", help="also the profile's low/high")) -> None:
        """Megatron-LM's H100 weak-scaling table, its Llama 3 FP8 table, AutoModel FSDP2."""
        from calibration.validate_dense import rows, summarize
        result = rows(band)
        s = summarize(result)
        emit({"rows": result, "summary": s}, format, _text(result, s))
