"""``clustersim run SCENARIO.yaml``: days, goodput and lost time of a whole training run.

The scenario is checked against the same schema as ``simulate`` (sim/scenario.py), then its
``cluster``, ``workload`` and ``run`` blocks are read; the step time comes from
``--step-time`` or from the model FLOPs at a given achieved ``--tflops-per-gpu``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from hw_models.errors import ClusterSimError
from hw_models.yamlio import read_yaml
from sim.cli.common import Format, emit


def formula_step_time(scenario: dict, tflops_per_gpu: float) -> float:
    """Model FLOPs per step / (GPUs x achieved FLOP/s per GPU)."""
    from sim.reliability import job_from_scenario
    from workloads.model import model_flops
    if tflops_per_gpu <= 0:
        raise ClusterSimError(f"--tflops-per-gpu must be > 0, got {tflops_per_gpu}")
    job = job_from_scenario(scenario)
    seqs = job.tokens_per_step / job.model.seq_len
    return model_flops(job.model, seqs * job.model.seq_len) / (job.gpus * tflops_per_gpu * 1e12)


def load(path: Path) -> dict:
    """The scenario file as a mapping; a missing, directory, non-UTF-8, malformed or
    non-mapping file is one ClusterSimError (hw_models/yamlio.py read_yaml), and so is a
    scenario the schema refuses (an unknown optimizer, an infeasible recompute, ...)."""
    from sim.scenario import parse
    data = read_yaml(path, "scenario")
    if not isinstance(data, dict):
        raise ClusterSimError(f"scenario file {str(path)!r} is not a YAML mapping; a scenario "
                              "has cluster, workload and a run block (see scenarios/)")
    parse(data, str(path))
    return data


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_command(
        scenario: Path = typer.Argument(..., help="scenario YAML with a 'run' block"),
        step_time: float = typer.Option(None, "--step-time", help="seconds per training step"),
        tflops_per_gpu: float = typer.Option(
            None, "--tflops-per-gpu", help="achieved TFLOP/s per GPU, to derive the step time"),
        slowed: float = typer.Option(
            None, "--slowed-step-time", help="seconds per step while an async checkpoint write "
            "runs (e.g. iteration_s_with of simulate's checkpoint_contention)"),
        format: Format = typer.Option(Format.table, "--format"),
    ) -> None:
        """Whole-run figures: run_days, goodput, interruptions, lost_hours, checkpoint overhead,
        best checkpoint interval (Monte-Carlo over failures and stragglers, seeded)."""
        import pandas as pd
        data = load(scenario)
        if (step_time is None) == (tflops_per_gpu is None):
            raise ClusterSimError("give exactly one of --step-time or --tflops-per-gpu")
        step = step_time if step_time is not None else formula_step_time(data, tflops_per_gpu)
        if slowed is not None and slowed < step:
            raise ClusterSimError(f"--slowed-step-time {slowed} must be >= the step time {step}")
        contention = None if slowed is None else {"iteration_s_without": step,
                                                  "iteration_s_with": slowed}
        from sim.reliability import run_summary
        out = {"step_time_s": step, **run_summary(data, step, contention)}
        rows = pd.DataFrame({"metric": list(out), "value": [_fmt(v) for v in out.values()]})
        emit(out, format, rows)


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
