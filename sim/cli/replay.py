"""``clustersim replay TRACE``: replay a PyTorch profiler trace and answer a what-if on it."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import typer

from hw_models.errors import ClusterSimError
from sim.cli.common import Format, emit, fail

# ``--set key=value`` keys and their types (fields of sim.whatif.WhatIf).
SETTABLE = {"gpu": str, "dp": int, "bw_scale": float, "nic_gbps": float, "dtype": str,
            "attention_seq": int}


def parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in SETTABLE:
            raise ClusterSimError(f"--set {item!r}: expected key=value with key one of "
                                  f"{', '.join(SETTABLE)}")
        try:
            out[key] = SETTABLE[key](value)
        except ValueError:
            raise ClusterSimError(f"--set {key}: {value!r} is not a valid "
                                  f"{SETTABLE[key].__name__}") from None
    return out


def run(trace: Path, source_system: str, target_system: str | None, sets: list[str],
        trace_out: Path | None) -> dict:
    from sim.replay import replay
    from sim.whatif import WhatIf
    from workloads.traces import chrome, kineto
    whatif = WhatIf(source_system=source_system, target_system=target_system, **parse_sets(sets))
    imported = kineto.load(trace)
    result = replay(imported, whatif, keep_rows=trace_out is not None)
    if trace_out is not None:
        chrome.write(result.whatif.rows, trace_out)
    kernels = {c: {**v, "whatif_s_per_iteration": result.whatif.kernels.get(c, 0.0),
                   "replayed_s_per_iteration": result.replayed.kernels.get(c, 0.0)}
               for c, v in imported.kernels.items()}
    return {
        "trace": str(trace), "files": imported.files,
        "measured_iteration_s": result.measured_iteration_s,
        "replayed_iteration_s": result.replayed.iteration_s,
        "replay_error": result.replay_error,
        "whatif_iteration_s": result.whatif.iteration_s,
        "breakdown": {"replayed": result.replayed.breakdown, "whatif": result.whatif.breakdown},
        "ranks": [{"rank": r, "device": imported.devices.get(r, ""),
                   "measured_iteration_s": result.measured_per_rank.get(r),
                   "replayed_iteration_s": result.replayed.per_rank.get(r),
                   "whatif_iteration_s": result.whatif.per_rank.get(r)}
                  for r in sorted(imported.devices)],
        "kernels": kernels, "steps": result.steps, "warnings": imported.warnings,
        "whatif": whatif.__dict__,
    }


def register(app: typer.Typer) -> None:
    @app.command("replay")
    def replay_command(
        trace: Path = typer.Argument(..., help="Kineto trace (.json/.json.gz) or a folder of ranks"),
        source_system: str = typer.Option("dgx-a100", "--source-system"),
        target_system: str = typer.Option(None, "--target-system"),
        sets: list[str] = typer.Option([], "--set", help=f"what-if: {', '.join(SETTABLE)}"),
        format: Format = typer.Option(Format.table, "--format"),
        trace_out: Path = typer.Option(None, "--trace-out", help="Chrome trace of the what-if"),
    ) -> None:
        """Replay a PyTorch profiler trace; predict its iteration time on other hardware."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data = run(trace, source_system, target_system, sets, trace_out)
        except ClusterSimError as exc:
            fail(str(exc))
        for w in data["warnings"]:
            typer.echo(f"warning: {w}", err=True)
        table = pd.DataFrame([
            {"": "iteration", "measured_ms": data["measured_iteration_s"] * 1e3,
             "replayed_ms": data["replayed_iteration_s"] * 1e3,
             "whatif_ms": data["whatif_iteration_s"] * 1e3}] + [
            {"": k.removesuffix("_s"), "measured_ms": None,
             "replayed_ms": v * 1e3, "whatif_ms": data["breakdown"]["whatif"][k] * 1e3}
            for k, v in data["breakdown"]["replayed"].items()])
        emit(data, format, table.round(3))
