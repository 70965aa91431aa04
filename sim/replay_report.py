"""What ``clustersim replay`` reports: a trace replayed as measured and under a what-if, as
one summary dict with the warnings a reader needs (host-paced steps, unmoved what-ifs)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hw_models.yamlio import check_writable, check_writable_dir
from sim import chrome_trace
from sim.replay import model_coverage, replay
from sim.whatif import Recoster, WhatIf, parse_sets, source_system_for, whatif_dtype
from workloads.traces.formats import load_trace


def report(trace: Path, source_system: str | None, target_system: str | None, sets: list[str],
           trace_out: Path | None, et: Path | None = None, export_chakra: Path | None = None,
           durations: str = "measured") -> dict:
    """Import ``trace`` (with its Execution Trace ``et``), replay it as measured and under the
    what-if ``sets`` on ``target_system``: the summary ``clustersim replay --format json``
    prints, with its ``warnings``. ``trace_out``: write the what-if as a Chrome trace;
    ``export_chakra``: write the imported graph as Chakra ET files. ``source_system``: None
    takes it from the GPU the trace records (``source_note`` says how it was chosen).
    ``durations="model"``: the models price every op they can (sim.replay.priced) and
    ``model_coverage`` says what they priced and what they could not."""
    if trace_out is not None:
        check_writable(trace_out, "--trace-out", "whatif.json")
    if export_chakra is not None:
        check_writable_dir(export_chakra, "--export-chakra")
    settings = parse_sets(sets)
    imported = load_trace(trace, et)
    source_system, source_note = source_system_for(
        imported.devices, getattr(imported, "device_memory_gb", {}), source_system,
        getattr(imported, "device_units", {}))
    whatif = WhatIf(source_system=source_system, target_system=target_system, **settings)
    exported = []
    if export_chakra is not None:
        from workloads.traces import chakra  # protobuf: an optional dependency
        exported = [str(p) for p in chakra.export(imported.graph, export_chakra,
                                                  steps=imported.steps)]
    result = replay(imported, whatif, keep_rows=trace_out is not None, durations=durations)
    if trace_out is not None:
        chrome_trace.write(result.whatif.rows, trace_out)
    warnings_ = list(imported.warnings)
    # a what-if that changes nothing (its dtype spelled out as the default) is no change
    plain = WhatIf(source_system=source_system)
    changed = replace(whatif, dtype=whatif_dtype(whatif)) != replace(plain,
                                                                    dtype=whatif_dtype(plain))
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
        "trace": str(trace), "source_system": source_system, "source_note": source_note,
        "files": imported.files, "format": imported.graph.meta.get("source"),
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
        "whatif": whatif.__dict__ | {"dtype": whatif_dtype(whatif)},
        **coverage,
    }
