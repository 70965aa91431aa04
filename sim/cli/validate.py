"""``clustersim validate ...``: predicted vs published, with the error of every row."""

from __future__ import annotations

import typer

from sim.cli.common import Format, emit

validate_app = typer.Typer(no_args_is_help=True, help="Validation against published measurements.")


@validate_app.command("megatron-sc21")
def megatron_sc21(format: Format = typer.Option(Format.table, "--format"),
                  fidelity: str = typer.Option("analytical", "--fidelity")) -> None:
    """Megatron-LM SC'21 Tables 1 and 2 (PTD-P): TFLOP/s per GPU."""
    from calibration.validate_megatron import run, summary
    df = run(fidelity)
    s = summary(df)
    text = df.fillna("").to_string(index=False) + (
        f"\n\nmedian |error| {s['median_abs_error_pct']:.1f}%   max |error| "
        f"{s['max_abs_error_pct']:.1f}%   rows over 20%: {s['rows_over_20pct']} of {s['rows']}")
    emit({"rows": df.to_dict("records"), "summary": s}, format, text)


@validate_app.command("trtllm")
def trtllm(format: Format = typer.Option(Format.table, "--format")) -> None:
    """TensorRT-LLM first-token latency at batch 1 (H100 FP8, A100 FP16): ms."""
    from calibration.validate_inference import run, summary
    df = run()
    s = summary(df)
    text = df.to_string(index=False) + (
        f"\n\nmedian |error| {s['median_abs_error_pct']:.1f}%   max |error| "
        f"{s['max_abs_error_pct']:.1f}%   rows over 15%: {s['rows_over_15pct']} of {s['rows']}")
    emit({"rows": df.to_dict("records"), "summary": s}, format, text)


@validate_app.command("korthikanti")
def korthikanti(format: Format = typer.Option(Format.table, "--format")) -> None:
    """Korthikanti et al. Table 4: one 22B layer's forward/backward time, TP=8 on DGX A100."""
    from calibration.validate_korthikanti import run, summary
    df = run()
    s = summary(df)
    text = df.to_string(index=False) + (
        f"\n\nmedian |error| {s['median_abs_error_pct']:.1f}%   max |error| "
        f"{s['max_abs_error_pct']:.1f}% (forward, backward and combined of {s['rows']} rows)")
    emit({"rows": df.to_dict("records"), "summary": s}, format, text)


def _register_features() -> None:
    from sim.cli.collective import register_nccl
    from sim.cli.validate_modern import register_modern
    register_nccl(validate_app)
    register_modern(validate_app)


_register_features()


def register(app: typer.Typer) -> None:
    app.add_typer(validate_app, name="validate")
