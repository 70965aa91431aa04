"""``clustersim validate ...``: predicted vs published, with the error of every row
(the reports themselves live in calibration/reports.py)."""

from __future__ import annotations

from enum import Enum

import typer

from sim.cli.common import Format, emit, fail


class Fidelity(str, Enum):
    """sim.fidelity of the suites that take one: the command line refuses another value
    (a bad one used to skip every training row as 'not simulated' and exit 0)."""
    analytical = "analytical"
    flow = "flow"

validate_app = typer.Typer(no_args_is_help=True, help="Validation against published measurements.")


@validate_app.command("megatron-sc21")
def megatron_sc21(format: Format = typer.Option(Format.table, "--format"),
                  fidelity: Fidelity = typer.Option(Fidelity.analytical, "--fidelity")) -> None:
    """Megatron-LM SC'21 Tables 1 and 2 (PTD-P): TFLOP/s per GPU."""
    from calibration import reports
    _emit(reports.megatron_sc21(fidelity.value), format)


@validate_app.command("megatron-h100")
def megatron_h100(format: Format = typer.Option(Format.table, "--format"),
                  band: bool = typer.Option(False, "--band", help="also the low/high of the "
                                            "profile's fast and slow corners")) -> None:
    """Megatron-LM's H100 weak-scaling table (GPT 1.7B-462B on 48-6144 GPUs): TFLOP/s per GPU."""
    from calibration import reports
    _emit(reports.megatron_h100(band), format)


@validate_app.command("trtllm")
def trtllm(format: Format = typer.Option(Format.table, "--format")) -> None:
    """TensorRT-LLM first-token latency at batch 1 (H100 FP8, A100 FP16): ms."""
    from calibration import reports
    _emit(reports.trtllm(), format)


@validate_app.command("korthikanti")
def korthikanti(format: Format = typer.Option(Format.table, "--format")) -> None:
    """Korthikanti et al. Table 4: one 22B layer's forward/backward time, TP=8 on DGX A100."""
    from calibration import reports
    _emit(reports.korthikanti(), format)


@validate_app.command("energy-llama1")
def energy_llama1(format: Format = typer.Option(Format.table, "--format")) -> None:
    """LLaMA-1 Table 15 (GPU-hours, MWh on 2048 A100) and metered H100 node power."""
    from calibration import validate_energy
    _emit(validate_energy.report(), format)


@validate_app.command("all")
def all_suites(format: Format = typer.Option(Format.table, "--format",
                                             help="table (Markdown) or json"),
               suite: list[str] = typer.Option(None, "--suite",
                                               help="only these suites (repeatable)")) -> None:
    """Every validation suite in one dashboard: each measurement with predicted, published,
    error and whether the prediction band covers it; median, p90 and worst per suite."""
    from calibration import reports
    from hw_models.errors import ClusterSimError
    try:
        report = reports.dashboard(suite or None)
    except ClusterSimError as exc:
        fail(str(exc))
    _emit(report, format)


@validate_app.command("replay")
def replay_traces(format: Format = typer.Option(Format.table, "--format")) -> None:
    """Model-only replay of the real GPU traces: error per trace, the share of device time
    the models priced, and why a trace does not test the models where it does not."""
    from calibration import reports
    _emit(reports.replay(), format)


@validate_app.command("nccl")
def nccl(format: Format = typer.Option(Format.table, "--format")) -> None:
    """Predicted vs measured nccl-tests busbw per size, geomean |error| per sweep."""
    from calibration import reports
    _emit(reports.nccl(), format)


_BAND = typer.Option(False, "--band", help="also the low/high of the profile's fast and slow corners")


@validate_app.command("long-context")
def long_context(format: Format = typer.Option(Format.table, "--format"), band: bool = _BAND) -> None:
    """NeMo long-sequence runs with context parallelism and TorchTitan CP sweeps."""
    from calibration import reports
    _emit(reports.long_context(band), format)


@validate_app.command("fp8")
def fp8(format: Format = typer.Option(Format.table, "--format"), band: bool = _BAND) -> None:
    """BF16/FP8 pairs and FP8/MXFP8/NVFP4 recipes on H100, B200, GB200."""
    from calibration import reports
    _emit(reports.fp8(band), format)


@validate_app.command("schedules")
def schedules(format: Format = typer.Option(Format.table, "--format"), band: bool = _BAND) -> None:
    """TorchTitan's 405B with 1F1B and interleaved 1F1B (the analytic rows are tests)."""
    from calibration import reports
    _emit(reports.schedules(band), format)


@validate_app.command("dense")
def dense(format: Format = typer.Option(Format.table, "--format"), band: bool = _BAND) -> None:
    """Megatron-LM's Llama 3 FP8 table and AutoModel FSDP2 (weak scaling: megatron-h100)."""
    from calibration import reports
    _emit(reports.dense(band), format)


@validate_app.command("moe")
def moe(format: Format = typer.Option(Format.table, "--format"),
        fidelity: Fidelity = typer.Option(Fidelity.analytical, "--fidelity")) -> None:
    """MoE training (NVIDIA's Megatron/NeMo runs) and serving (SGLang): tokens/s."""
    from calibration import reports
    _emit(reports.moe(fidelity.value), format)


@validate_app.command("rl")
def rl(format: Format = typer.Option(Format.table, "--format")) -> None:
    """NeMo RL GRPO/DAPO and OpenRLHF PPO step times: every row, skipped ones with reasons."""
    from calibration import reports
    _emit(reports.rl(), format)


def _emit(report: tuple, format: Format) -> None:
    data, text = report
    emit(data, format, text)


def register(app: typer.Typer) -> None:
    app.add_typer(validate_app, name="validate")
