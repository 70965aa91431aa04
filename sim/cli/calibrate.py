"""``clustersim calibrate run|fit|show|predict-ops``: measure, fit, inspect, predict."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
import yaml

from hw_models.errors import ClusterSimError
from hw_models.yamlio import check_writable, check_writable_dir
from sim.cli.common import Format, emit

if TYPE_CHECKING:
    import pandas as pd


class Suite(StrEnum):
    kernels = "kernels"
    collectives = "collectives"


class Device(StrEnum):
    cpu = "cpu"
    cuda = "cuda"


calibrate = typer.Typer(no_args_is_help=True, help="Microbenchmarks -> fitted profiles.")


@calibrate.command("run")
def run_cmd(suite: Suite = typer.Argument(..., help="kernels or collectives"),
            device: Device = typer.Option(Device.cpu, "--device"),
            out: Path = typer.Option(Path("calib_out"), "--out", help="folder for the CSV"),
            quick: bool = typer.Option(False, "--quick", help="tiny grid (seconds)"),
            nprocs: int = typer.Option(2, "--nprocs", help="local ranks for collectives"),
            procs: int = typer.Option(1, "--procs", help="kernels: copies run at once in lockstep "
                                      "(the ranks of a job sharing this machine)"),
            threads: int = typer.Option(None, "--threads", help="kernels: torch threads per process")
            ) -> None:
    """Run a microbenchmark suite on this machine and write a tidy CSV."""
    check_writable_dir(out, "--out")
    if suite is Suite.kernels:
        from calibration.microbench.kernels import run
        path = run(device.value, out, quick, threads=threads, procs=procs)
    else:
        from calibration.microbench.collectives import run
        path = run(device.value, out, nprocs, quick)
    typer.echo(str(path))


@calibrate.command("fit")
def fit_cmd(inputs: list[Path] = typer.Argument(..., help="microbench CSVs / nccl-tests logs"),
            out: Path = typer.Option(..., "--out", help="profile YAML to write"),
            name: str = typer.Option(None, "--name"),
            device: str = typer.Option(None, "--device", help="catalog GPU key (default: inferred)"),
            system: str = typer.Option(None, "--system", help="catalog system for link bandwidths")) -> None:
    """Fit a profile (with input hashes, fit quality and bootstrap spread)."""
    from calibration.fit_measured import build_profile
    from hw_models.profile import parse
    check_writable(out, "--out", "profile.yaml")
    prof = build_profile(list(inputs), name, device, system)
    parse(prof, source=str(out))          # the written file must load
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(prof, sort_keys=False, width=100))
    typer.echo(f"wrote {out}")
    typer.echo(_quality(prof).to_string(index=False))


def _quality(prof: dict) -> pd.DataFrame:
    import pandas as pd
    return pd.DataFrame([{"fit": k, **v} for k, v in prof.get("quality", {}).items()
                         if isinstance(v, dict)])


@calibrate.command("show")
def show_cmd(profile: str = typer.Argument(..., help="profile name or YAML path"),
             format: Format = typer.Option(Format.table, "--format")) -> None:
    """Show a profile's parameters, fit quality and parameter spread."""
    import pandas as pd

    from hw_models.profile import load
    p = load(profile)
    data = p.model_dump(exclude_none=True)
    rows = []
    for key, params in p.uncertainty.items():
        q = p.quality.get(key, {})
        for param, iv in params.items():
            rows.append({"fit": key, "param": param, "p05": iv["p05"], "p95": iv["p95"],
                         "r2_log": q.get("r2_log"), "median_err_pct": q.get("median_abs_err_pct")})
    head = f"profile {p.name} (device {p.device}, {len(p.inputs)} inputs, by {p.fitted_by})"
    emit(data, format, head + "\n" + pd.DataFrame(rows).to_string(index=False))


@calibrate.command("predict-ops")
def predict_ops_cmd(system: str = typer.Option("dgx-h100", "--system"),
                    model: str = typer.Option(..., "--model", help="preset or inline JSON"),
                    tp: int = typer.Option(1, "--tp"), tokens: int = typer.Option(..., "--tokens"),
                    dtype: str = typer.Option("fp16", "--dtype"),
                    profile: str = typer.Option(None, "--profile", help="default: the GPU's"),
                    format: Format = typer.Option(Format.table, "--format")) -> None:
    """Compute-model time (ms) of each Vidur transformer-layer operator per TP rank."""
    import pandas as pd

    from calibration.vidur import LayerShape, predict_ops_ms
    from hw_models import catalog
    from hw_models.compute import ComputeModel
    from hw_models.profile import check_device, device_gpu, load
    from workloads.model import resolve
    if tp < 1 or tokens < 1:
        raise ClusterSimError(f"--tp and --tokens must be >= 1, got tp={tp} tokens={tokens}")
    spec = resolve(_model_ref(model))
    if spec.heads % tp or spec.ffn % tp:
        raise ClusterSimError(f"--tp {tp} must divide heads {spec.heads} and ffn {spec.ffn}")
    sys = catalog.system(system)
    gpu_key = sys.gpu if isinstance(sys.gpu, str) else sys.gpu.name
    prof = load(profile or sys.default_profile)
    check_device(prof, gpu_key, sys.gpu_spec)
    cm = ComputeModel(device_gpu(prof, sys.gpu_spec), prof)
    ms = predict_ops_ms(cm, LayerShape.of(spec), tokens, tp, dtype)
    emit(ms, format, pd.DataFrame({"op": list(ms), "ms": [round(v, 4) for v in ms.values()]}))


def _model_ref(model: str) -> str | dict:
    text = model.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ClusterSimError(f"--model is not valid JSON: {exc}") from None
    return model


def register(app: typer.Typer) -> None:
    app.add_typer(calibrate, name="calibrate")
