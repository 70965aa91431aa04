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


@validate_app.command("moe")
def moe(format: Format = typer.Option(Format.table, "--format"),
        fidelity: str = typer.Option("analytical", "--fidelity")) -> None:
    """MoE training (NVIDIA's Megatron/NeMo runs) and serving rows: tokens/s per GPU."""
    import pandas as pd

    from calibration.validate_moe import inference_rows, run, summary
    df = run(fidelity)
    s = summary(df)
    inf = inference_rows()
    served = inf[inf.skipped == ""].error_pct.abs()
    s["serving_median_abs_error_pct"] = float(served.median()) if len(served) else float("nan")
    with pd.option_context("display.width", 250, "display.max_colwidth", 70):
        text = (df.fillna("").to_string(index=False)
                + "\n\nserving rows (moe_inference.csv):\n" + inf.fillna("").to_string(index=False)
                + f"\nserving: {len(served)} rows predicted, median |error| "
                f"{s['serving_median_abs_error_pct']:.1f}%"
                + f"\n\n{s['predicted']} of {s['rows']} training rows predicted ({s['skipped']} skipped, "
                f"reasons in the table). median |error|: all {s['median_abs_error_pct']:.1f}%, H100 "
                f"{s['median_abs_error_pct_h100']:.1f}%, Blackwell {s['median_abs_error_pct_blackwell']:.1f}% "
                f"(Hopper efficiency profile on Blackwell: uncalibrated); max {s['max_abs_error_pct']:.1f}%")
    emit({"rows": df.to_dict("records"), "serving_rows": inf.to_dict("records"), "summary": s},
         format, text)


def _register_features() -> None:
    from sim.cli.collective import register_nccl
    register_nccl(validate_app)


_register_features()


def register(app: typer.Typer) -> None:
    app.add_typer(validate_app, name="validate")
