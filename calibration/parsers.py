"""Parsers for real microbenchmark outputs (nccl-tests logs, Vidur operator CSVs)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from hw_models.errors import ClusterSimError

# "[1,0]<stdout>:" style prefixes that mpirun adds to every line.
_MPI_PREFIX = re.compile(r"^\[\d+,\d+\]<\w+>:")
_NCCL_COLUMNS = ["size_bytes", "count", "type", "redop", "root",
                 "oop_time_us", "oop_algbw_gb_s", "oop_busbw_gb_s", "oop_error",
                 "ip_time_us", "ip_algbw_gb_s", "ip_busbw_gb_s", "ip_error"]


def parse_nccl_tests(text: str, source: str = "log") -> pd.DataFrame:
    """One row per message size of an nccl-tests ``*_perf`` log.

    Handles the header lines, mpirun prefixes, and logs with or without a ``root``
    column (reduce/broadcast have one, all_reduce does not).
    """
    rows, ranks = [], set()
    for raw in text.splitlines():
        line = _MPI_PREFIX.sub("", raw).strip()
        rank = re.match(r"#\s+Rank\s+(\d+)", line)
        if rank:
            ranks.add(int(rank.group(1)))
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if not fields[0].isdigit():
            continue
        if len(fields) == 12:            # no root column
            fields.insert(4, "-1")
        if len(fields) != 13:
            raise ClusterSimError(f"{source}: malformed nccl-tests row: {line[:80]!r}")
        rows.append(fields)
    if not rows:
        raise ClusterSimError(f"{source}: no nccl-tests result rows found (empty or truncated log?)")
    df = pd.DataFrame(rows, columns=_NCCL_COLUMNS)
    for col in df.columns:
        if col not in ("type", "redop", "oop_error", "ip_error"):
            df[col] = pd.to_numeric(df[col], errors="coerce")
    df["n_ranks"] = len(ranks) or None
    return df


def read_nccl_tests(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ClusterSimError(f"nccl-tests log {str(path)!r} does not exist")
    return parse_nccl_tests(path.read_text(errors="replace"), source=str(path))


VIDUR_GEMMS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")


def vidur_gemm_shapes(df: pd.DataFrame, op: str) -> pd.DataFrame:
    """(m, n, k) per row of a Vidur ops CSV for one GEMM operator, per TP rank."""
    t = df["num_tensor_parallel_workers"]
    h = df["n_embd"]
    hd = h / df["n_head"]
    ffn = df["n_expanded_embd"] * (1 + df["use_gated_mlp"].astype(bool).astype(int))
    n_k = {
        "attn_pre_proj": ((df["n_head"] + 2 * df["n_kv_head"]) * hd / t, h),
        "attn_post_proj": (h, h / t),
        "mlp_up_proj": (ffn / t, h),
        "mlp_down_proj": (h, df["n_expanded_embd"] / t),
    }[op]
    return pd.DataFrame({"m": df["num_tokens"], "n": n_k[0], "k": n_k[1],
                         "time_s": df[f"time_stats.{op}.median"] * 1e-3})
