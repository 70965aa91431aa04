"""``clustersim collective``: an nccl-tests look-alike on the flow model, and
``register_nccl(validate_app)`` for ``clustersim validate nccl``."""

from __future__ import annotations

import re

import pandas as pd
import typer

from hw_models import catalog
from hw_models.errors import ClusterSimError
from hw_models.profile import load as load_profile
from sim.cli.common import Format, emit
from sim.network.analytical import ClusterLayout, bus_factor
from sim.network.flow import FlowNetwork
from sim.progress import progress
from workloads.graph import CommGroup

OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "reduce",
       "sendrecv")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """'8', '64K', '8G' (powers of 1024, as nccl-tests reads -b/-e)."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)B?\s*", str(text).upper())
    if not m or int(m.group(1)) <= 0:
        raise ClusterSimError(f"size {text!r} is not a positive byte count like 8, 64K, 8G")
    return int(m.group(1)) * _UNITS[m.group(2)]


def sweep(system: str, nodes: int, gpus: int | None, op: str, algo: str | None,
          proto: str | None, min_bytes: int, max_bytes: int, network: dict | None = None
          ) -> pd.DataFrame:
    if op not in OPS:
        raise ClusterSimError(f"unknown op {op!r}; allowed: {', '.join(OPS)}")
    if min_bytes > max_bytes:
        raise ClusterSimError(f"--min-bytes {min_bytes} is larger than --max-bytes {max_bytes}")
    sys = catalog.system(system)
    if nodes < 1:
        raise ClusterSimError(f"--nodes must be >= 1, got {nodes}")
    world = nodes * sys.gpus_per_node
    n = world if gpus is None else gpus
    if not 1 <= n <= world:
        raise ClusterSimError(f"--gpus must be in 1..{world} for {nodes} node(s) of {system}")
    if op == "sendrecv" and n != 2:
        raise ClusterSimError("sendrecv runs between 2 GPUs: pass --gpus 2")
    cfg = dict(network or {}) | {k: v for k, v in (("algo", algo), ("proto", proto)) if v}
    net = FlowNetwork(ClusterLayout(sys, nodes, sys.nic_gbps),
                      load_profile(sys.default_profile), cfg)
    group = CommGroup(tuple(range(n)))
    rows, size = [], min_bytes
    bar = progress(total=(max_bytes // min_bytes).bit_length(), desc=f"{op} on {n} GPUs",
                   unit="size")
    while size <= max_bytes:
        bar.update()
        ch = net.choose(op, size, group)
        t = net.collective_time(op, size, group)
        algbw = size / t / 1e9 if t > 0 else 0.0
        rows.append({"size_bytes": size, "time_us": round(t * 1e6, 2),
                     "algbw_gb_s": round(algbw, 2),
                     "busbw_gb_s": round(algbw * busbw_factor(op, n), 2),
                     "algo": ch.algo, "proto": ch.proto})
        size *= 2
    bar.close()
    return pd.DataFrame(rows)


def busbw_factor(op: str, n: int) -> float:
    """nccl-tests PERFORMANCE.md (busbw_factors.csv); sendrecv: 1."""
    return 1.0 if op == "sendrecv" else bus_factor(op, n)


def register(app: typer.Typer) -> None:
    @app.command("collective")
    def collective_command(
            system: str = typer.Option("dgx-h100", "--system"),
            nodes: int = typer.Option(1, "--nodes"),
            gpus: int = typer.Option(None, "--gpus", help="GPUs in the group (default: all)"),
            op: str = typer.Option("all_reduce", "--op", help=", ".join(OPS)),
            algo: str = typer.Option(None, "--algo", help="force an algorithm (NCCL_ALGO)"),
            proto: str = typer.Option(None, "--proto", help="LL, LL128 or Simple (NCCL_PROTO)"),
            min_bytes: str = typer.Option("8", "--min-bytes"),
            max_bytes: str = typer.Option("8G", "--max-bytes"),
            format: Format = typer.Option(Format.table, "--format")) -> None:
        """Predicted nccl-tests sweep: sizes double from --min-bytes to --max-bytes."""
        proto_n = {"ll": "LL", "ll128": "LL128", "simple": "Simple"}.get((proto or "").lower(), proto)
        df = sweep(system, nodes, gpus, op, algo.lower() if algo else None, proto_n,
                   parse_size(min_bytes), parse_size(max_bytes))
        emit(df.to_dict(orient="records"), format, df)


def register_nccl(validate_app: typer.Typer) -> None:
    """Adds ``nccl`` to the ``validate`` sub-app (the lead's sim/cli/validate.py)."""
    @validate_app.command("nccl")
    def nccl_command(format: Format = typer.Option(Format.table, "--format")) -> None:
        """Predicted vs measured nccl-tests busbw per size, geomean |error| per sweep."""
        from calibration import fit_p2p
        from calibration.validate_nccl import summary, validate
        rows = pd.concat([validate().assign(op="all_reduce"),
                          fit_p2p.validate().assign(op="sendrecv", fitted=True)],
                         ignore_index=True)
        summ = summary(rows)
        text = rows.to_string(index=False) + "\n\n" + summ.to_string(index=False)
        emit({"rows": rows, "summary": summ}, format, text)
