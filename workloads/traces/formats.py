"""One entry point for every trace format: ``load_trace(path, et=None) -> ImportedTrace``.

The format is detected from the content, not the name: Kineto Chrome trace (a JSON object
with ``traceEvents``), PyTorch Execution Trace (``schema`` and ``nodes``), or Chakra ET
(binary protobuf). A folder may hold per-rank Kineto files, per-rank ET files, both (each
ET linked with the Kineto file of the same rank), or Chakra ``*.et`` files. ``et`` links an
Execution Trace (or a folder of them) with a Kineto trace.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from hw_models.errors import ClusterSimError
from workloads.traces import et as ET
from workloads.traces import et_graph, kineto
from workloads.traces.events import open_text

_SNIFF = 1 << 16
KINETO, EXEC_TRACE, CHAKRA = "kineto", "et", "chakra"


def detect(path: Path) -> str:
    if path.suffix == ".et":
        return CHAKRA
    try:
        with open_text(path) as f:
            head = f.read(_SNIFF).decode("utf-8", errors="replace")
    except (OSError, EOFError):
        head = ""
    text = head.lstrip()
    if not text.startswith(("{", "[")):
        return CHAKRA if head and not text[:1].isprintable() else KINETO
    if re.search(r'"schema"\s*:', head) and re.search(r'"nodes"\s*:', head):
        return EXEC_TRACE
    return KINETO


def load_trace(path: str | Path, et: str | Path | None = None) -> ImportedTrace:
    """The trace at ``path`` (file or folder) as a graph; one ClusterSimError when it holds
    nothing to replay."""
    out = _load(Path(path), et)
    if not len(out.graph):
        raise ClusterSimError(f"trace {str(path)!r}: no CPU ops, GPU kernels or collectives to "
                              "replay (only metadata events); record it with the PyTorch profiler "
                              "around at least one training step")
    return out


def _load(path: Path, et: str | Path | None) -> ImportedTrace:
    if not path.exists():
        raise ClusterSimError(f"trace {str(path)!r} does not exist")
    files = _files(path)
    kinds: dict[str, list[Path]] = {}
    for f in files:
        kinds.setdefault(detect(f), []).append(f)
    if et is not None:
        if EXEC_TRACE in kinds or CHAKRA in kinds:
            raise ClusterSimError("--et links an Execution Trace with a Kineto trace; TRACE must be "
                                  "the Kineto trace")
        ets = _files(Path(et)) if Path(et).exists() else []
        if not ets:
            raise ClusterSimError(f"execution trace {str(et)!r} does not exist")
        bad = [f.name for f in ets if detect(f) != EXEC_TRACE]
        if bad:
            raise ClusterSimError(f"--et {bad[0]}: not a PyTorch Execution Trace")
        return link(kinds.get(KINETO, []), ets)
    if CHAKRA in kinds:
        if len(kinds) > 1:
            raise ClusterSimError(f"{path}: mixes Chakra .et files with JSON traces")
        from workloads.traces import chakra
        return chakra.load(path)
    if EXEC_TRACE in kinds and KINETO in kinds:
        return link(kinds[KINETO], kinds[EXEC_TRACE])
    if EXEC_TRACE in kinds:
        return load_et(kinds[EXEC_TRACE])
    return kineto.load_files(kinds[KINETO])


def _files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file()
                   and p.name.endswith((".json", ".json.gz", ".et")))
    if not files:
        raise ClusterSimError(f"folder {str(path)!r} holds no .json, .json.gz or .et traces")
    return files


def _ranked(files: list[Path], ranks: list[int | None]) -> list[int]:
    """Ranks of per-rank files: recorded rank, else the number in ``rank<N>`` of the name,
    else the file's position."""
    out = []
    for i, (f, r) in enumerate(zip(files, ranks, strict=True)):
        m = re.search(r"rank[_-]?(\d+)", f.name)
        out.append(r if r is not None else int(m.group(1)) if m else i)
    if len(set(out)) != len(out):
        raise ClusterSimError(f"two trace files claim the same rank: {[f.name for f in files]}")
    return out


def load_et(files: list[Path]) -> ImportedTrace:
    """Execution Traces alone: ops costed by the compute and network models."""
    ets = [ET.load(f) for f in files]
    ranks = _ranked(files, [e.rank for e in ets])
    out = et_graph.build(sorted(zip(ranks, ets, strict=True), key=lambda x: x[0]),
                         max(ranks) + 1)
    out.measured = False
    from workloads.graph import Collective
    if out.graph.world_size == 1 and any(isinstance(n.op, Collective) for n in out.graph.nodes):
        out.warnings.append("one execution trace with collectives: an ET records no group "
                            "members, so they are priced for the loaded ranks only (free for one "
                            "rank); load every rank's ET from a folder")
    return out


def link(kineto_files: list[Path], et_files: list[Path]) -> ImportedTrace:
    """Execution Traces linked with the Kineto traces of the same run (paired by rank)."""
    from workloads.traces.et_link import link as join
    if not kineto_files:
        raise ClusterSimError("linking an Execution Trace needs the Kineto trace of the same run")
    if len(kineto_files) != len(et_files):
        raise ClusterSimError(f"{len(et_files)} execution traces but {len(kineto_files)} Kineto "
                              "traces: give one of each per rank")
    k_ranks = _ranked(kineto_files, [_kineto_rank(f) for f in kineto_files])
    ets = [ET.load(f) for f in et_files]
    e_ranks = _ranked(et_files, [e.rank for e in ets])
    by_rank = dict(zip(k_ranks, kineto_files, strict=True))
    if set(e_ranks) != set(by_rank):
        raise ClusterSimError(f"execution traces of ranks {sorted(e_ranks)} but Kineto traces of "
                              f"ranks {sorted(by_rank)}")
    timing, stats, t0 = {}, {}, float("inf")
    links = {}
    for r, e in zip(e_ranks, ets, strict=True):
        links[r] = join(e, by_rank[r])
        t0 = min(t0, links[r].t0)
    for r, lk in links.items():
        timing[r] = lk.timing
        stats[r] = {"linked": lk.linked, "et_ops": lk.total, "method": lk.method}
    pairs = sorted(zip(e_ranks, ets, strict=True), key=lambda x: x[0])
    out = et_graph.build(pairs, max(e_ranks) + 1, timing, t0, source="et+kineto")
    out.link = stats
    for r in e_ranks:                   # the GPU each rank ran on is in its Kineto header
        devices = kineto.read_header(by_rank[r]).devices
        first = devices[0] if isinstance(devices, list) and devices and \
            isinstance(devices[0], dict) else {}
        if first.get("name"):
            out.devices[r] = str(first["name"])
        if isinstance(first.get("totalGlobalMem"), int | float) and first["totalGlobalMem"] > 0:
            out.device_memory_gb[r] = first["totalGlobalMem"] / 1e9
        if isinstance(first.get("numSms"), int) and first["numSms"] > 0:
            out.device_units[r] = first["numSms"]
    _rendezvous_durations(out.graph, timing)
    out.files += [str(by_rank[r]) for r, _ in pairs]
    for r, s in stats.items():
        if s["linked"] < s["et_ops"]:
            out.warnings.append(f"rank {r}: {s['et_ops'] - s['linked']} of {s['et_ops']} ET ops "
                                "have no Kineto op (kept with zero duration)")
    return out


def _rendezvous_durations(graph, timing: dict[int, dict[int, tuple[float, float]]]) -> None:
    """A linked collective is measured on every rank it was loaded for, as the span from the
    c10d call to the end of its transfer (et_link), each including that rank's wait for the
    others. Where every member is loaded, kineto.collective_timing splits it as in the
    Kineto importer: the shared transfer from the last arrival to the first completion, and
    each rank's later completion as the Delay that follows the collective on its thread."""
    from workloads.graph import Collective, Delay
    groups: dict[tuple, list] = {}
    tails = {n.meta["tail_of"]: n for n in graph.nodes if "tail_of" in n.meta}
    for n in graph.nodes:
        if isinstance(n.op, Collective) and n.meta.get("et_id") in timing.get(n.rank, {}):
            groups.setdefault((n.op.group.ranks, n.op.seq), []).append(n)
    for (ranks, _), nodes in groups.items():
        if {n.rank for n in nodes} >= set(ranks):
            spans = {n.rank: timing[n.rank][n.meta["et_id"]] for n in nodes}
            shared, own = kineto.collective_timing({r: (s, s + d) for r, (s, d) in spans.items()})
            for n in nodes:
                n.op = replace(n.op, duration_s=shared * 1e-6)
                if n.id in tails:
                    tails[n.id].op = Delay(own[n.rank] * 1e-6, tails[n.id].op.name)


def _kineto_rank(path: Path) -> int | None:
    rank = kineto.read_header(path).distributed
    rank = rank.get("rank") if isinstance(rank, dict) else None
    return rank if isinstance(rank, int) and rank >= 0 else None


ImportedTrace = kineto.ImportedTrace
