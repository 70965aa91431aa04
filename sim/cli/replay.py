"""``clustersim replay TRACE``: replay a PyTorch profiler trace and answer a what-if on it."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from hw_models.errors import ClusterSimError
from sim.cli.common import Format, emit, fail
from sim.whatif import SETTABLE


def register(app: typer.Typer) -> None:
    @app.command("replay")
    def replay_command(
        trace: Path = typer.Argument(..., help="Kineto trace, PyTorch Execution Trace (.json/"
                                     ".json.gz) or Chakra ET (.et), or a folder of per-rank files"),
        source_system: str = typer.Option(
            None, "--source-system", help="system the trace was recorded on (default: the "
            "catalog system of the GPU the trace records)"),
        target_system: str = typer.Option(None, "--target-system"),
        sets: list[str] = typer.Option([], "--set", help=f"what-if: {', '.join(SETTABLE)}"),
        format: Format = typer.Option(Format.table, "--format"),
        trace_out: Path = typer.Option(None, "--trace-out", help="Chrome trace of the what-if"),
        et: Path = typer.Option(None, "--et", help="Execution Trace of the same run as the "
                                "Kineto TRACE (file or per-rank folder): link them"),
        export_chakra: Path = typer.Option(None, "--export-chakra",
                                           help="write the imported graph as Chakra ET files "
                                           "(one <dir>/et.<rank>.et per rank)"),
        durations: str = typer.Option("measured", "--durations",
                                      help="measured: replay recorded times; model: price "
                                      "kernels and collectives from their shapes and sizes "
                                      "with the compute and collective models"),
    ) -> None:
        """Replay a PyTorch trace (Kineto, Execution Trace, Chakra); predict its iteration time
        on other hardware."""
        import pandas as pd

        from sim.replay_report import report
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if durations not in ("measured", "model"):
                    raise ClusterSimError(f"--durations {durations!r}; allowed: measured, model")
                data = report(trace, source_system, target_system, sets, trace_out, et,
                              export_chakra, durations)
        except ClusterSimError as exc:
            fail(str(exc))
        typer.echo(f"note: {data['source_note']}", err=True)
        for w in data["warnings"]:
            typer.echo(f"warning: {w}", err=True)
        table = pd.DataFrame([
            {"": "iteration", "measured_ms": _ms(data["measured_iteration_s"]),
             "replayed_ms": data["replayed_iteration_s"] * 1e3,
             "whatif_ms": data["whatif_iteration_s"] * 1e3}] + [
            {"": k.removesuffix("_s"), "measured_ms": None,
             "replayed_ms": v * 1e3, "whatif_ms": data["breakdown"]["whatif"][k] * 1e3}
            for k, v in data["breakdown"]["replayed"].items()])
        emit(data, format, table.round(3))
        if format == Format.table and "model_coverage" in data:
            typer.echo(_coverage(data))


def _coverage(data: dict, top: int = 5) -> str:
    """``--durations model`` in words: the step error, what was priced, what was not."""
    cov = data["model_coverage"]
    err = data["replay_error"]
    lines = [f"model vs measured step: {'n/a' if err is None else f'{err:+.1%}'}; priced "
             f"{cov['priced_share']:.0%} of the recorded device time "
             f"({cov['priced_recorded_s_per_iteration'] * 1e3:.3f} ms recorded -> "
             f"{cov['priced_model_s_per_iteration'] * 1e3:.3f} ms modelled per iteration)"]
    for k in cov["unpriced_kernels"][:top]:
        share = "" if k["share_of_step"] is None else f", {k['share_of_step']:.1%} of the step"
        lines.append(f"  unpriced {k['class']}: {k['name'][:70]} x{k['count']} "
                     f"({k['recorded_s_per_iteration'] * 1e3:.3f} ms per iteration{share})")
    return "\n".join(lines)


def _ms(x: float | None) -> float | None:
    return None if x is None else x * 1e3
