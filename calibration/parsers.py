"""Parsers for real microbenchmark outputs (nccl-tests logs, Vidur operator CSVs)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pandas as pd

from hw_models.errors import ClusterSimError, ClusterSimWarning

# Line prefixes launchers add: mpirun --tag-output "[1,0]<stdout>:", srun --label "0: ".
_PREFIX = re.compile(r"^(\[\d+,\d+\]<\w+>:|\d+:\s)")
_NCCL_COLUMNS = ["size_bytes", "count", "type", "redop", "root",
                 "oop_time_us", "oop_algbw_gb_s", "oop_busbw_gb_s", "oop_error",
                 "ip_time_us", "ip_algbw_gb_s", "ip_busbw_gb_s", "ip_error"]
_TEXT_COLUMNS = ("type", "redop", "oop_error", "ip_error")
# nccl-tests binaries are named <op>_perf; logs usually keep that name.
_NCCL_OPS = ("all_reduce", "all_gather", "reduce_scatter", "alltoall", "broadcast", "reduce",
             "sendrecv", "gather", "scatter", "hypercube")
_FOOTER = "# Avg bus bandwidth"


def _row_fields(line: str, source: str, lineno: int) -> list[str]:
    """The 13 fields of a result row; 12-field rows (no root column) get root -1,
    9/8-field rows (a run with only out-of-place results) get empty in-place fields."""
    fields = line.split()
    if len(fields) in (8, 9):
        fields += ["nan", "nan", "nan", "nan"]
    if len(fields) == 12:
        fields.insert(4, "-1")
    if len(fields) != 13:
        raise ClusterSimError(
            f"{source}:{lineno}: nccl-tests row has {len(line.split())} fields, expected 12 "
            f"(no root column) or 13; truncated or not an nccl-tests log? {line[:60]!r}")
    return fields


def parse_nccl_tests(text: str, source: str = "log", require_footer: bool = True) -> pd.DataFrame:
    """One row per message size of an nccl-tests ``*_perf`` log.

    Handles the header lines, mpirun/srun prefixes, logs with or without a ``root``
    column (newer nccl-tests print it for every op), out-of-place and in-place columns.
    A log that stops before nccl-tests' closing ``# Avg bus bandwidth`` line is
    reported as truncated unless ``require_footer`` is False.
    """
    rows, ranks, footer, counts_wrong = [], set(), False, False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = _PREFIX.sub("", raw).strip()
        rank = re.match(r"#\s+Rank\s+(\d+)", line)
        if rank:
            ranks.add(int(rank.group(1)))
        footer = footer or line.startswith(_FOOTER)
        counts_wrong = counts_wrong or (line.startswith("#") and "#wrong" in line[1:])
        if line and not line.startswith("#") and line.split()[0].isdigit():
            rows.append([*_row_fields(line, source, lineno), lineno])
    if not rows:
        raise ClusterSimError(f"{source}: no nccl-tests result rows found (empty or truncated log?)")
    if require_footer and not footer:
        raise ClusterSimError(f"{source}: log ends after {len(rows)} rows without nccl-tests' "
                              f"{_FOOTER!r} line (truncated log?)")
    df = pd.DataFrame(rows, columns=[*_NCCL_COLUMNS, "line"]).drop_duplicates("size_bytes")
    for col in df.columns:
        if col not in _TEXT_COLUMNS:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    if df["oop_time_us"].isna().any():
        raise ClusterSimError(f"{source}: non-numeric time in an nccl-tests row")
    for col in ("oop_time_us", "ip_time_us"):
        bad = df[df[col] <= 0]
        if len(bad):
            row = bad.iloc[0]
            raise ClusterSimError(f"{source}:{row.line}: nccl-tests time must be > 0 us, got "
                                  f"{row[col]} (size {row.size_bytes} B); corrupt log?")
    if counts_wrong:
        df = _drop_wrong(df, source)
    df["n_ranks"] = len(ranks) or None
    op = next((op for op in _NCCL_OPS if op in Path(source).name), None)
    df["op"] = "all_to_all" if op == "alltoall" else op
    return df.reset_index(drop=True)


def _drop_wrong(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Rows whose ``#wrong`` count (elements that failed nccl-tests' check) is > 0 measured a
    broken collective: they are dropped, with a warning naming them."""
    wrong = sum(pd.to_numeric(df[c], errors="coerce").fillna(0) for c in ("oop_error", "ip_error"))
    bad = df[wrong > 0]
    if len(bad):
        lines = ", ".join(str(n) for n in bad.line[:5]) + (" ..." if len(bad) > 5 else "")
        warnings.warn(f"{source}: skipped {len(bad)} nccl-tests row(s) with #wrong > 0 (lines "
                      f"{lines}): their results failed nccl-tests' correctness check",
                      ClusterSimWarning, stacklevel=3)
    if len(bad) == len(df):
        raise ClusterSimError(f"{source}: every nccl-tests row has #wrong > 0; nothing to use")
    return df[wrong == 0]


def read_nccl_tests(path: str | Path, require_footer: bool = True) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ClusterSimError(f"nccl-tests log {str(path)!r} does not exist")
    return parse_nccl_tests(path.read_text(errors="replace"), source=str(path),
                            require_footer=require_footer)


# Columns a microbenchmark CSV must have, per suite (calibration/microbench).
_META = ["suite", "op", "dtype", "device", "device_name", "torch_version", "date",
         "samples_s", "median_s", "iqr_s"]
MICROBENCH_COLUMNS = {
    "kernels": _META + ["op_class", "flops", "bytes"],
    "collectives": _META + ["n_ranks", "size_bytes", "time_us", "busbw_gb_s"],
}
_KERNEL_CLASS_COLUMNS = {"gemm": ["m", "n", "k"], "attention": ["seq", "causal"],
                         "memory": ["numel"]}


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    """A CSV file, or one clear error naming it (missing file, empty file)."""
    if path.is_dir():
        raise ClusterSimError(f"{what} {str(path)!r} is a directory; give a CSV file")
    if not path.is_file():
        raise ClusterSimError(f"{what} {str(path)!r} does not exist")
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ClusterSimError(f"{path}: empty CSV (no header, no rows)") from None
    except pd.errors.ParserError as exc:            # a row with more fields than the header
        raise ClusterSimError(f"{path}: malformed CSV: {str(exc).splitlines()[-1]}") from None
    except UnicodeDecodeError:
        raise ClusterSimError(f"{path}: not a UTF-8 text CSV") from None


def read_microbench(path: str | Path) -> pd.DataFrame:
    """A CSV written by calibration/microbench, checked for the columns the fit needs."""
    path = Path(path)
    df = _read_csv(path, "microbenchmark CSV")
    if "suite" not in df.columns:
        raise ClusterSimError(f"{path}: missing column 'suite'; expected a CSV written by "
                              f"'calibrate run kernels|collectives'")
    suites = set(df["suite"].dropna())
    if len(suites) != 1 or not suites <= set(MICROBENCH_COLUMNS):
        raise ClusterSimError(f"{path}: suite must be one of {sorted(MICROBENCH_COLUMNS)}, "
                              f"found {sorted(map(str, suites))}")
    suite = suites.pop()
    need = list(MICROBENCH_COLUMNS[suite])
    if suite == "kernels":
        for cls in set(df.get("op_class", pd.Series(dtype=str)).dropna()):
            need += _KERNEL_CLASS_COLUMNS.get(cls, [])
    missing = [c for c in dict.fromkeys(need) if c not in df.columns]
    if missing:
        raise ClusterSimError(f"{path}: missing column(s) {', '.join(missing)} for a "
                              f"{suite} microbenchmark CSV")
    if "skipped" in df.columns:
        df = df[df["skipped"].isna()]
    if df.empty or df["median_s"].isna().all():
        raise ClusterSimError(f"{path}: no measured rows")
    return df.reset_index(drop=True)


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


_VIDUR_NET = ("size", "num_workers", "devices_per_node", "collective")


def read_vidur_network(path: str | Path) -> pd.DataFrame:
    """A Vidur network profile (``{gpu}_dgx_{all_reduce,send_recv}.csv``: one row per
    collective, GPU count, GPUs per node and size in bytes, times in ms timed around the
    torch.distributed call) as tidy rows: op, gpus, gpus_per_node, size_bytes, time_us
    (median), time_min_us, time_max_us."""
    path = Path(path)
    df = _read_csv(path, "Vidur network CSV")
    ops = sorted({c.split(".")[1] for c in df.columns if c.startswith("time_stats.")})
    missing = [c for c in _VIDUR_NET if c not in df.columns]
    if len(ops) != 1 or missing:
        raise ClusterSimError(
            f"{path}: expected Vidur's columns {', '.join(_VIDUR_NET)} and time_stats.<op>."
            f"{{min,max,median}} for one op; missing {missing or 'time_stats'}, ops {ops}")
    op = ops[0]
    need = [f"time_stats.{op}.{s}" for s in ("min", "max", "median")]
    if any(c not in df.columns for c in need):
        raise ClusterSimError(f"{path}: missing column(s) {[c for c in need if c not in df]}")
    out = pd.DataFrame({"op": op, "gpus": df["num_workers"].astype(int),
                        "gpus_per_node": df["devices_per_node"].astype(int),
                        "size_bytes": df["size"].astype(float),
                        "time_us": df[need[2]] * 1e3, "time_min_us": df[need[0]] * 1e3,
                        "time_max_us": df[need[1]] * 1e3}).dropna()
    if out.empty:
        raise ClusterSimError(f"{path}: no measured rows")
    return out.sort_values(["gpus", "gpus_per_node", "size_bytes"]).reset_index(drop=True)
