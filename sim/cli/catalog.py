"""``clustersim catalog gpus|systems|models``: list the presets with their sources."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

import typer

from hw_models import catalog
from sim.cli.common import Format, emit

if TYPE_CHECKING:
    import pandas as pd


class Kind(str, Enum):
    gpus = "gpus"
    systems = "systems"
    models = "models"


def table(kind: Kind) -> pd.DataFrame:
    import pandas as pd
    if kind is Kind.gpus:
        rows = [{"gpu": k, "name": g.name, "bf16_tflops": g.peak_tflops.get("bf16"),
                 "fp8_tflops": g.peak_tflops.get("fp8"), "fp4_tflops": g.peak_tflops.get("fp4"),
                 "hbm_gb": g.hbm_gb, "hbm_tb_s": g.hbm_tb_s, "scale_up_gb_s": g.scale_up_gb_s,
                 "tdp_w": g.tdp_w, "dtypes": ",".join(g.dtypes),
                 "calibration": _status(k, g.profile), "source": g.source}
                for k, g in catalog.gpus().items()]
    elif kind is Kind.systems:
        rows = [{"system": k, "gpu": s.gpu, "gpus_per_node": s.gpus_per_node,
                 "scale_up": s.scale_up.kind, "domain_gpus": s.scale_up.domain_gpus,
                 "scale_up_gb_s": s.scale_up.gb_s_per_gpu, "nics": s.nics_per_node,
                 "nic_gbps": s.nic_gbps, "usd_per_gpu_hour": s.cost_per_gpu_hour_usd,
                 "source": s.source}
                for k, s in catalog.systems().items()]
    else:
        from workloads.model import presets
        from workloads.moe import active_params
        rows = [{"model": k, "params_b": round(m.params / 1e9, 1),
                 "active_b": round(active_params(m) / 1e9, 1) if m.is_moe else None,
                 "experts": f"{m.moe.top_k}/{m.moe.experts}" if m.is_moe else "",
                 "layers": m.layers, "hidden": m.hidden, "heads": m.heads, "kv_heads": m.kv_heads,
                 "ffn_hidden": m.ffn_hidden, "vocab": m.vocab, "seq_len": m.seq_len,
                 "activation": m.activation, "source": m.source}
                for k, m in presets().items()]
    return pd.DataFrame(rows)


def _status(gpu_key: str, profile_name: str) -> str:
    """measured / fitted / roofline-assumed: how the part's time model is calibrated."""
    from hw_models import profile
    return profile.calibration_status(profile.load(profile_name), gpu_key)["status"]


def register(app: typer.Typer) -> None:
    @app.command("catalog")
    def catalog_command(kind: Kind = typer.Argument(..., help="gpus, systems or models"),
                        format: Format = typer.Option(Format.table, "--format")) -> None:
        """List the built-in GPUs, systems or models."""
        df = table(kind)
        emit(df.to_dict(orient="records"), format,
             df.drop(columns="source") if format is Format.table else df)
