"""Streaming reader of PyTorch profiler (Kineto) Chrome-trace JSON into compact records.

Kineto writes ``{"schemaVersion", "distributedInfo", "deviceProperties", "traceEvents": [...]}``
with complete events (``ph: "X"``, ``ts``/``dur`` in microseconds). Events are read one at
a time with ijson (C backend) and kept only as small ``Event`` tuples, so memory grows with
the number of events that matter, not with the file size (a 1 GB trace holds many flow
arrows and runtime calls that the replay does not need; see benchmarks/trace_memory.py).
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

import ijson

from hw_models.errors import ClusterSimError

# Event kinds kept for the replay (Kineto ``cat`` values, lower-cased).
CPU_OP, RUNTIME, KERNEL, MEMCPY, MEMSET, ANNOTATION = range(6)
_CATS = {"cpu_op": CPU_OP, "operator": CPU_OP, "cuda_runtime": RUNTIME, "cuda_driver": RUNTIME,
         "kernel": KERNEL, "gpu_memcpy": MEMCPY, "gpu_memset": MEMSET,
         "user_annotation": ANNOTATION}
GPU_KINDS = frozenset({KERNEL, MEMCPY, MEMSET})

# Kernel/annotation argument keys worth keeping (collective parameters, copy sizes).
_KEEP_ARGS = ("Collective name", "In msg nelems", "Out msg nelems", "dtype", "Group size",
              "Process Group Name", "Process Group Ranks", "bytes")
# How far into the file the header (distributedInfo, deviceProperties) is searched.
_HEADER_BYTES = 1 << 20


class Event(NamedTuple):
    kind: int
    name: str
    pid: int | str
    tid: int | str
    ts: float        # microseconds
    dur: float       # microseconds
    corr: int        # CUDA correlation id, -1 if none
    device: int      # GPU ops: device index; -1 otherwise
    stream: int      # GPU ops: stream id; -1 otherwise
    extra: dict | None


class Header(NamedTuple):
    distributed: dict
    devices: list


def open_text(path: Path) -> IO[bytes]:
    """Binary handle of a .json or .json.gz file (gzip detected by magic bytes)."""
    if not path.is_file():
        raise ClusterSimError(f"trace file {str(path)!r} does not exist")
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def read_header(path: Path) -> Header:
    """``distributedInfo`` and ``deviceProperties``: Kineto writes them before the events,
    so only the head of the file is decoded."""
    with open_text(path) as f:
        try:
            head = f.read(_HEADER_BYTES).decode("utf-8", errors="replace")
        except (OSError, EOFError) as exc:
            raise ClusterSimError(f"trace {path.name}: cannot read ({exc})") from None
    return Header(_object_after(head, "distributedInfo") or {},
                  _object_after(head, "deviceProperties") or [])


def _object_after(text: str, key: str) -> dict | list | None:
    m = re.search(rf'"{key}"\s*:\s*', text)
    if not m:
        return None
    try:
        return json.JSONDecoder().raw_decode(text, m.end())[0]
    except json.JSONDecodeError:
        return None


def _one_line(exc: Exception) -> str:
    """The JSON parser's message on one line: yajl draws a caret under the bad text over
    three lines ("lexical error: ...\n   not json\n   (right here) ------^"), and may give
    bytes; the first line says what is wrong."""
    msg = exc.args[0] if exc.args else str(exc)
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return str(msg).strip().splitlines()[0].strip() if str(msg).strip() else type(exc).__name__


def iter_events(path: Path) -> Iterator[Event]:
    """Yield the events the replay uses; malformed files raise ClusterSimError."""
    count = 0
    with open_text(path) as f:
        try:
            for ev in ijson.items(f, "traceEvents.item", use_float=True):
                count += 1
                rec = _record(ev)
                if rec is not None:
                    yield rec
        except (ijson.JSONError, ijson.IncompleteJSONError) as exc:
            raise ClusterSimError(f"trace {path.name}: not valid JSON after {count} events "
                                  f"(truncated or corrupt?): {_one_line(exc)}") from None
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise ClusterSimError(f"trace {path.name}: cannot read ({exc})") from None
    if count == 0:
        raise ClusterSimError(f"trace {path.name}: no 'traceEvents' list; is this a PyTorch "
                              "profiler (Kineto) Chrome trace?")


def _record(ev: object) -> Event | None:
    if not isinstance(ev, dict) or ev.get("ph") != "X":
        return None
    kind = _CATS.get(str(ev.get("cat", "")).lower())
    ts, dur = ev.get("ts"), ev.get("dur", 0.0)
    if kind is None or not isinstance(ts, int | float) or not isinstance(dur, int | float):
        return None
    args = ev.get("args") if isinstance(ev.get("args"), dict) else {}
    corr = args.get("correlation", -1)
    extra = None
    if kind in GPU_KINDS or kind == ANNOTATION:
        extra = {k: args[k] for k in _KEEP_ARGS if k in args} or None
    elif kind == CPU_OP and "Input Dims" in args:     # record_shapes=True (traces/shapes.py)
        extra = {"dims": args["Input Dims"], "types": args.get("Input type")}
    name = ev.get("name", "")
    return Event(kind, sys.intern(str(name)), ev.get("pid", 0), ev.get("tid", 0), float(ts),
                 max(0.0, float(dur)), corr if isinstance(corr, int) else -1,
                 _int(args.get("device", -1)), _int(args.get("stream", -1)), extra)


def _int(x: object) -> int:
    return x if isinstance(x, int) else -1
