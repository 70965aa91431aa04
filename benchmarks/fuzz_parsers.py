"""Fuzz the parsers of user files: every generated input must end in a result or in one
ClusterSimError, never another exception (a crash) nor a hang.

    python benchmarks/fuzz_parsers.py [--cases 10000] [--seed 0]

Inputs are mutations of real files (mutation fuzzing, as AFL or Hypothesis do it, but
structure-aware): the small bundled Kineto traces, an Execution Trace, a Chakra ET exported
from a trace, nccl-tests logs, a microbenchmark CSV, a scenario and a sweep YAML. JSON traces
are mutated as JSON (events dropped, duplicated, fields deleted or set to hostile values:
NaN, infinities, negatives, huge numbers, wrong types) and as bytes (truncation, bit flips);
logs and CSVs line by line and token by token. A loaded trace is also replayed (what
`clustersim replay` does next). Each case runs under a time limit; running past it counts
as a hang. Prints one row per target: cases, accepted, refused (ClusterSimError), crashes,
hangs, and the first crash of each kind with the input that caused it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gzip
import io
import json
import random
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hw_models.errors import ClusterSimError  # noqa: E402

TRACES = ROOT / "tests/data/traces"
NCCL_LOGS = ROOT / "calibration/reference/echo_nccl_tests"
HOSTILE = [None, -1, 0, -1e300, 1e300, float("nan"), float("inf"), 2**63, -(2**63), "x", "", [],
           {}, True, [1, 2], {"a": 1}, "nan", 1e-320, 3.5]
HOSTILE_TOKENS = ["nan", "-1", "0", "inf", "-inf", "x", "1e999", "", "N/A", "0x10", "9" * 30,
                  "-0", "1,5", "#", "#wrong", "\x00"]
CASE_LIMIT_S = 10.0


class Hang(Exception):
    pass


@contextlib.contextmanager
def limit(seconds: float) -> Iterator[None]:
    def on_alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---- seeds ---------------------------------------------------------------------------

def _json(name: str) -> dict:
    return json.load(gzip.open(TRACES / name))


def seeds() -> dict[str, object]:
    """The real inputs the mutations start from (small, so each case takes milliseconds)."""
    from calibration.parsers import MICROBENCH_COLUMNS
    kineto = [_json("a100_simple_add_kineto.json.gz"), _json("mi250_minitoy_train.json.gz")]
    csv_cols = MICROBENCH_COLUMNS["collectives"]
    csv_rows = [",".join(csv_cols)] + [
        ",".join(["collectives", "all_reduce", "fp32", "cpu", "x86", "2.3", "2025-01-01",
                  "0.001;0.0011", "0.00105", "0.00002", "2", str(2 ** k), "1050", "0.5"])
        for k in range(10, 20)]
    return {
        "kineto": kineto,
        "et": [_json("a100_simple_add_et.json.gz")],
        "nccl": [(NCCL_LOGS / f"azure_a100_40gb_all_reduce_{n}gpu.log").read_text()
                 for n in (2, 8)],
        "microbench_csv": ["\n".join(csv_rows) + "\n"],
        "scenario_yaml": [(ROOT / "examples/gpt3_175b_a100.yaml").read_text(),
                          (ROOT / "examples/inference_llama3_70b.yaml").read_text()],
        "sweep_yaml": [(ROOT / "examples/sweep_small.yaml").read_text()],
    }


def chakra_seed(tmp: Path) -> bytes | None:
    """A Chakra ET file exported from a bundled trace (None if the exporter is unavailable)."""
    try:
        from workloads.traces import chakra
        from workloads.traces.formats import load_trace
        tr = load_trace(TRACES / "a100_simple_add_kineto.json.gz")
        files = chakra.export(tr.graph, tmp / "chakra_seed", steps=tr.steps)
        return Path(files[0]).read_bytes()
    except Exception:   # noqa: BLE001 - optional extra
        return None


# ---- mutations -----------------------------------------------------------------------

def mutate_value(rng: random.Random, obj: object) -> object:
    """One hostile change somewhere inside a JSON-like value."""
    if isinstance(obj, dict) and obj:
        key = rng.choice(list(obj))
        op = rng.random()
        if op < 0.25:
            obj.pop(key)
        elif op < 0.6 and isinstance(obj[key], dict | list) and obj[key]:
            mutate_value(rng, obj[key])
        else:
            obj[key] = copy.deepcopy(rng.choice(HOSTILE))
    elif isinstance(obj, list) and obj:
        i = rng.randrange(len(obj))
        op = rng.random()
        if op < 0.2:
            obj.pop(i)
        elif op < 0.3:
            obj.insert(i, copy.deepcopy(obj[i]))
        elif op < 0.8 and isinstance(obj[i], dict | list):
            mutate_value(rng, obj[i])
        else:
            obj[i] = copy.deepcopy(rng.choice(HOSTILE))
    return obj


def mutate_json(rng: random.Random, doc: dict) -> bytes:
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 4)):
        target = doc
        events = doc.get("traceEvents") if isinstance(doc.get("traceEvents"), list) else \
            doc.get("nodes") if isinstance(doc.get("nodes"), list) else None
        if events and rng.random() < 0.8:
            target = rng.choice(events) if rng.random() < 0.7 else events
        mutate_value(rng, target)
    text = json.dumps(doc).encode()
    return mutate_bytes(rng, text) if rng.random() < 0.15 else text


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    op = rng.random()
    if op < 0.4 and b:
        return bytes(b[:rng.randrange(len(b))])                 # truncated
    for _ in range(rng.randint(1, 8)):
        if b:
            b[rng.randrange(len(b))] = rng.randrange(256)       # flipped bytes
    return bytes(b)


def mutate_lines(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 5)):
        if not lines:
            break
        i = rng.randrange(len(lines))
        op = rng.random()
        if op < 0.2:
            lines.pop(i)
        elif op < 0.3:
            lines.insert(i, lines[i])
        elif op < 0.85:
            toks = lines[i].split(" " if " " in lines[i] else ",")
            j = rng.randrange(len(toks))
            toks[j] = rng.choice(HOSTILE_TOKENS)
            lines[i] = (" " if " " in lines[i] else ",").join(toks)
        else:
            lines[i] = lines[i][:rng.randrange(len(lines[i]) + 1)]
    out = "\n".join(lines) + "\n"
    return out if rng.random() > 0.1 else out[:rng.randrange(len(out) + 1)]


# ---- targets -------------------------------------------------------------------------

def _trace_case(tmp: Path, name: str, data: bytes) -> None:
    from sim.replay import replay
    from sim.whatif import WhatIf
    from workloads.traces.formats import load_trace
    path = tmp / name
    path.write_bytes(data)
    tr = load_trace(path)
    replay(tr, WhatIf(source_system="dgx-a100", target_system="dgx-h100"))


def targets(tmp: Path) -> dict[str, Callable[[random.Random], Callable[[], None]]]:
    """Per target, a maker: rng -> the case to run (a closure over one mutated input)."""
    from calibration.parsers import parse_nccl_tests, read_microbench
    from hw_models.yamlio import read_yaml
    from sim import scenario as scenario_mod
    from sim.sweep import spec as sweep_spec
    s = seeds()
    chakra = chakra_seed(tmp)

    def kineto(rng):
        data = mutate_json(rng, rng.choice(s["kineto"]))
        return lambda: _trace_case(tmp, "k.json", data)

    def et(rng):
        data = mutate_json(rng, rng.choice(s["et"]))
        return lambda: _trace_case(tmp, "e.json", data)

    def chakra_et(rng):
        data = mutate_bytes(rng, chakra)
        return lambda: _trace_case(tmp, "c.et", data)

    def nccl(rng):
        text = mutate_lines(rng, rng.choice(s["nccl"]))
        return lambda: parse_nccl_tests(text, "all_reduce_perf.log")

    def csv(rng):
        text = mutate_lines(rng, rng.choice(s["microbench_csv"]))

        def case():
            p = tmp / "m.csv"
            p.write_text(text)
            read_microbench(p)
        return case

    def yaml_file(kind):
        def make(rng):
            text = mutate_lines(rng, rng.choice(s[f"{kind}_yaml"]))

            def case():
                p = tmp / f"{kind}.yaml"
                p.write_text(text)
                data = read_yaml(p, kind)
                (scenario_mod.parse if kind == "scenario" else sweep_spec.parse)(data, str(p))
            return case
        return make

    out = {"kineto": kineto, "execution trace": et, "nccl-tests log": nccl,
           "microbench CSV": csv, "scenario YAML": yaml_file("scenario"),
           "sweep YAML": yaml_file("sweep")}
    if chakra is not None:
        out["chakra ET"] = chakra_et
    return out


def run(cases: int, seed: int = 0, quiet: bool = False) -> dict[str, dict]:
    """``cases`` generated inputs spread over the targets; returns per-target counts and the
    first crash of each kind (exception type + where)."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        makers = targets(Path(tmp))
        stats = {t: Counter() for t in makers}
        crashes: dict[str, dict[str, str]] = {t: {} for t in makers}
        names = list(makers)
        for i in range(cases):
            target = names[i % len(names)]
            case = makers[target](rng)
            stats[target]["cases"] += 1
            try:
                with limit(CASE_LIMIT_S), warnings.catch_warnings(), \
                        contextlib.redirect_stderr(io.StringIO()):
                    warnings.simplefilter("ignore")
                    case()
                stats[target]["accepted"] += 1
            except ClusterSimError:
                stats[target]["refused"] += 1
            except Hang:
                stats[target]["hangs"] += 1
            except Exception as exc:  # noqa: BLE001 - the point: count what escapes
                stats[target]["crashes"] += 1
                tb = traceback.extract_tb(exc.__traceback__)[-1]
                kind = f"{type(exc).__name__} at {Path(tb.filename).name}:{tb.lineno}"
                crashes[target].setdefault(kind, f"{exc}"[:200])
            if not quiet and (i + 1) % 1000 == 0:
                print(f"  {i + 1} cases", file=sys.stderr)
    zero = dict.fromkeys(("cases", "accepted", "refused", "crashes", "hangs"), 0)
    return {t: {**zero, **stats[t], "crash_kinds": crashes[t]} for t in stats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = run(args.cases, args.seed)
    wall = time.perf_counter() - t0
    print(f"{'target':18s} {'cases':>7s} {'accepted':>9s} {'refused':>8s} {'crashes':>8s} {'hangs':>6s}")
    total = Counter()
    for t, r in res.items():
        print(f"{t:18s} {r['cases']:7d} {r['accepted']:9d} {r['refused']:8d} {r['crashes']:8d} "
              f"{r['hangs']:6d}")
        total.update({k: v for k, v in r.items() if k != "crash_kinds"})
    print(f"{'all':18s} {total['cases']:7d} {total['accepted']:9d} {total['refused']:8d} "
          f"{total['crashes']:8d} {total['hangs']:6d}   ({wall:.0f} s, seed {args.seed})")
    for t, r in res.items():
        for kind, msg in r["crash_kinds"].items():
            print(f"crash [{t}] {kind}: {msg}")


if __name__ == "__main__":
    main()
