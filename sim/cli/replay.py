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
        trace_out: Path | None, et: Path | None = None, export_chakra: Path | None = None,
        durations: str = "measured") -> dict:
    from sim.replay import model_coverage, replay
    from sim.whatif import WhatIf
    from workloads.traces import chrome
    from workloads.traces.formats import load_trace
    whatif = WhatIf(source_system=source_system, target_system=target_system, **parse_sets(sets))
    imported = load_trace(trace, et)
    exported = []
    if export_chakra is not None:
        from workloads.traces import chakra
        exported = [str(p) for p in chakra.export(imported.graph, export_chakra,
                                                  steps=imported.steps)]
    result = replay(imported, whatif, keep_rows=trace_out is not None, durations=durations)
    if trace_out is not None:
        chrome.write(result.whatif.rows, trace_out)
    warnings_ = list(imported.warnings)
    changed = whatif != WhatIf(source_system=source_system)
    if result.cpu_bound:
        warnings_.append(
            f"cpu_bound: the device is busy {result.device_busy_fraction:.0%} of the replayed "
            "iteration; the step is paced by the host (CPU time is replayed as measured), so "
            "a faster GPU or fabric moves kernel and collective time but "
            + ("hardly the step time" if changed else "not the step time"))
    elif changed and result.whatif_unmoved:
        warnings_.append(
            "whatif_unmoved: the what-if changed device busy time but the iteration by under 1%; "
            "the step is paced by time it does not re-cost (host time and waits replayed as "
            "measured), so the unchanged step time is that pacing, not the hardware")
    kernels = {c: {**v, "whatif_s_per_iteration": result.whatif.kernels.get(c, 0.0),
                   "replayed_s_per_iteration": result.replayed.kernels.get(c, 0.0)}
               for c, v in imported.kernels.items()}
    coverage = {}
    if durations == "model":
        from sim.whatif import Recoster
        pricer = Recoster(WhatIf(source_system=source_system), imported.graph.world_size)
        coverage = {"model_coverage": model_coverage(imported, result.measured_iteration_s,
                                                     pricer)}
        share = coverage["model_coverage"]["priced_share"]
        if share < 0.5:
            warnings_.append(
                f"model_coverage: the models priced {share:.0%} of the recorded device time "
                "(kernels without shapes: record with record_shapes=True, or link an Execution "
                "Trace with --et); the rest is replayed as recorded")
    return {
        "durations": durations, **coverage,
        "trace": str(trace), "files": imported.files, "format": imported.graph.meta.get("source"),
        "nodes": len(imported.graph), "cpu_bound": result.cpu_bound,
        "whatif_unmoved": result.whatif_unmoved,
        "device_busy_fraction": result.device_busy_fraction, "link": imported.link,
        "chakra_files": exported, "step_basis": getattr(imported, "step_basis", "cpu"),
        "launched_before_trace": getattr(imported, "before_trace", {}),
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
        "kernels": kernels, "steps": result.steps, "warnings": warnings_,
        "whatif": whatif.__dict__,
    }


def register(app: typer.Typer) -> None:
    @app.command("replay")
    def replay_command(
        trace: Path = typer.Argument(..., help="Kineto trace, PyTorch Execution Trace (.json/"
                                     ".json.gz) or Chakra ET (.et), or a folder of per-rank files"),
        source_system: str = typer.Option("dgx-a100", "--source-system"),
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
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if durations not in ("measured", "model"):
                    raise ClusterSimError(f"--durations {durations!r}; allowed: measured, model")
                data = run(trace, source_system, target_system, sets, trace_out, et,
                           export_chakra, durations)
        except ClusterSimError as exc:
            fail(str(exc))
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


def _ms(x: float | None) -> float | None:
    return None if x is None else x * 1e3
